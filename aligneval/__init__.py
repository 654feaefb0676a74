"""aligneval: convert a Hugging Face encoder to alignment attention, fine-tune the pair, and compare them."""

__version__ = "0.1.0"
