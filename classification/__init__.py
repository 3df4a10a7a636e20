"""ffnet.classification"""
