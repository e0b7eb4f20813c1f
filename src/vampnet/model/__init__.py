"""The masked bidirectional transformer (coarse and coarse-to-fine are one class with different configs)."""
from .transformer import MaskedTransformer, TransformerConfig, relative_position_buckets

__all__ = ["MaskedTransformer", "TransformerConfig", "relative_position_buckets"]
