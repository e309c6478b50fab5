"""The query side: description search (and, later, centres, recognition, the CLI and HTTP service)."""
