"""The HTTP service: recognition, cross-modal search and the knowledge base over FastAPI (``unibind serve``)."""
