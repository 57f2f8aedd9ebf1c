"""Continuous delivery: deploy, verify, promote and roll back a bento per environments/*.yaml."""
