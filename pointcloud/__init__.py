"""ffnet.pointcloud"""
