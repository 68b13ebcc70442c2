"""The model registry: small text records in git that point by md5 at artifacts in the DVC cache and remote.

Records and history, promotion of gate-passing models, operator actions (rollback, accepted drift), drift
references, state pointers, the artifacts' sources, garbage collection that keeps every recorded object, and the
DVC remote the objects are pushed to.
"""
