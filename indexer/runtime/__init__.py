"""The compute runtime and vector conventions: the one place that picks the device, FAISS imported and
tuned in one place, and how vectors are typed, normalised and stored.

May import: the standard library, numpy, torch and faiss, and ``unibind.schema.errors`` (the typed errors).
"""
