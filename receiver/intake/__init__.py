"""receiver/intake"""
