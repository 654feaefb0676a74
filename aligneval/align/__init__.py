"""Alignment attention: find each layer's query/key projections (`hooks`), the key–query
distribution distances (`losses`), and the twin fine-tuning loop (`train.align_pair`).

Nothing heavy is imported here; `import aligneval.align.train` pulls in torch when it is used.
"""
