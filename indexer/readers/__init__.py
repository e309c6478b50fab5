"""Reading user input: description corpora (JSON / JSONL / CSV), the builtin corpora, feature files and head-training pairs,
one module each; ``text`` (the normal form and hash of a description) and ``jsonio`` (strict JSON / JSONL, UTF-8)
are what they share.

Validated records out, clear errors naming the file and line in; nothing here touches the store.
May import: ``unibind.schema`` (errors only) and the standard library (numpy for feature files, torch for .pt files).
"""
