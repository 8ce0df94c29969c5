"""kulak: self-hosted social-media listening and sentiment."""

__version__ = "0.1.0"
