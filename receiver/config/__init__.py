"""receiver/config"""
