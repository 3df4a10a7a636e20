"""ffnet.generation"""
