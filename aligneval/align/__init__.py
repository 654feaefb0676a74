"""Alignment attention: find each layer's query/key projections (`hooks`), the key–query distances
(`variants`, one file per family, built on `blocks` and `kernels`), and the twin fine-tuning
(`train.align_pair`: checks and resume plan in `plan`, the loop in `loop`, the auxiliary players'
game in `game`).

Nothing heavy is imported here; `import aligneval.align.train` pulls in torch when it is used.
"""
