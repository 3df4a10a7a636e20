"""ffnet.detection"""
