"""The weekly job as a parallel flow: products' DVC chains fanned out over Dask, orchestrated by Prefect.

``workspace`` runs one product's chain in an isolated DVC workspace (on this machine or a cluster worker);
``lockmerge`` brings the results back into the main workspace with one dvc.lock write; ``planning`` asks DVC which
products have anything to do; ``weekly`` is the Prefect flow. The core library never imports this package.
"""
