"""Reading user input: description corpora (JSON / JSONL / CSV), the builtin corpora, feature files and head-training pairs.

Validated records out, clear errors naming the file and line in; nothing here touches the store.
May import: ``unibind.schema`` (errors only) and the standard library.
"""
