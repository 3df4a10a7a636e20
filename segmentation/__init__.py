"""ffnet.segmentation"""
