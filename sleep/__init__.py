"""Nightcap's sleep: consolidation of the day's episodes into the model's weights.

`sleep.cycle.run_cycle` chains the steps; each step lives in its own module. torch, transformers
and peft are imported only inside this package, and only when a cycle runs.
"""
