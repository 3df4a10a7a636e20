"""ffnet.superres"""
