"""Requests in the store: launching their exports, writing outcomes back, the DPO's jobs."""
