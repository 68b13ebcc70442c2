"""Synthetic UCI-schema transactions drawn from known demand curves: the generator, its calendar, its settings,
and the closed-form truth (expected quantities, elasticities, optimal prices) benchmarks score against."""
