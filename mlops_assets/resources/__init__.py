"""Dagster resources: each owns one external system and is built from settings at launch."""

from mlops_assets.resources.resources import MLflowResource, NotifierResource, WarehouseResource

__all__ = ["MLflowResource", "NotifierResource", "WarehouseResource"]
