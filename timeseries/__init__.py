"""ffnet.timeseries"""
