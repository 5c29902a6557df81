"""receiver/rollback"""
