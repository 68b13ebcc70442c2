"""The one pricing path: a validated request, a served product, the price grid, the status quo and the decision
(change, keep or test). The risk gate, ``pricetrail recommend``, the router and the benchmarks all price through
:func:`pricetrail.pricing.recommend.recommend`."""
