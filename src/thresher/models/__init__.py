"""Backbones (one registry) and checkpoint loading for them."""

from .backbones import BACKBONES, backbone_names, create_backbone
from .checkpoint import LoadReport, load_backbone_weights

__all__ = ["BACKBONES", "LoadReport", "backbone_names", "create_backbone", "load_backbone_weights"]
