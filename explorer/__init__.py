"""ResNet Explorer: see why deep plain nets train worse than shallow ones, and how shortcuts fix it."""

__version__ = "0.1.0"
