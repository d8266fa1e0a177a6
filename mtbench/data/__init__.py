"""Datasets: real loaders (COCO, VOC, ImageFolder) and generated ``synthetic`` data."""
