"""shadoweval: mirror live LLM traffic to candidate models and capture comparable pairs."""

__version__ = "0.1.0"
