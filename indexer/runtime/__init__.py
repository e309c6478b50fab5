"""The compute runtime and vector conventions: the one place that picks the device, FAISS imported and
tuned in one place, how vectors are typed, normalised and stored, and the leases of running processes (who
writes or reads, and whether it still lives).

May import: the standard library, numpy, torch and faiss, and ``unibind.schema.errors`` (the typed errors).
"""
