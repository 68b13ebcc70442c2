"""Hyper-parameter search for the demand network with Optuna (TPE sampler, median pruner)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
from torch import nn

from pricetrail.modeling.checkpoint import to_plain_types
from pricetrail.modeling.network import (
    PriceResponseFit,
    PriceResponseNetwork,
    build_network,
    is_real_number,
    is_whole_number,
    pool_price_responses,
)
from pricetrail.modeling.order_rate import OrderRatePrior
from pricetrail.modeling.refit import refit_output_layer, refit_price_response
from pricetrail.modeling.training import (
    OPTIMIZERS,
    TrainingDivergedError,
    TrainResult,
    predict,
    set_seed,
    train_network,
)

logger = logging.getLogger(__name__)

# key -> kind: "int_range"/"float_range"/"log_range" take [low, high]; "choice" takes a list of options.
SEARCH_SPACE_KINDS: dict[str, str] = {
    "n_layers": "int_range",
    "units": "int_range",
    "dropout": "float_range",
    "batch_norm": "choice",
    "learning_rate": "log_range",
    "optimizer": "choice",
    "batch_size": "choice",
}
# The median pruner waits for this many complete trials before it prunes anything.
PRUNER_STARTUP_TRIALS = 5
# Where a trial records its refit price weights (the pooled price-response uncertainty reads them).
PRICE_WEIGHTS_ATTR = "price_weights"
# Which rows the served price-response network's output layer is solved on at the end (tune).
FINAL_FIT_ROWS = ("train", "train_and_validation")


# monotone: demand non-increasing in the price by construction (network.PriceResponseNetwork); free: the plain MLP
# over every feature, kept to compare against.
PRICE_RESPONSES = ("monotone", "free")


class TuningSettingsError(ValueError):
    """``params.yaml: tune_primary_model`` holds a value that is not accepted."""


@dataclass(frozen=True)
class TuneSettings:
    """``params.yaml: tune_primary_model``: every key is required there (the one place defaults live)."""

    n_trials: int
    max_epochs: int
    patience: int
    timeout_seconds: float | None
    price_response: str
    pool_trials: int
    final_fit_rows: str
    order_rate_prior: OrderRatePrior
    search_space: Mapping[str, list[Any]]

    def __post_init__(self) -> None:
        for name in ("n_trials", "max_epochs", "patience", "pool_trials"):
            value = getattr(self, name)
            if not is_whole_number(value) or value < 1:
                raise TuningSettingsError(f"tune_primary_model.{name}={value!r} is not accepted: a whole number >= 1")
        if self.timeout_seconds is not None and not (is_real_number(self.timeout_seconds)
                                                     and self.timeout_seconds > 0):
            raise TuningSettingsError(f"tune_primary_model.timeout_seconds={self.timeout_seconds!r} is not "
                                      "accepted: a number of seconds > 0, or null for no limit")
        for name, accepted in (("price_response", PRICE_RESPONSES), ("final_fit_rows", FINAL_FIT_ROWS)):
            if getattr(self, name) not in accepted:
                raise TuningSettingsError(f"tune_primary_model.{name}={getattr(self, name)!r} is not accepted; "
                                          f"use one of {list(accepted)}")

    @classmethod
    def from_params(cls, values: Mapping[str, Any]) -> TuneSettings:
        from pricetrail.project.config import settings_from_params

        raw = settings_from_params(_RawTuneSettings, "tune_primary_model", values, error=TuningSettingsError)
        try:
            prior = OrderRatePrior.from_params(raw.order_rate_prior)
            space = validate_search_space(raw.search_space)
        except ValueError as error:
            raise TuningSettingsError(f"tune_primary_model: {error}") from error
        return cls(n_trials=raw.n_trials, max_epochs=raw.max_epochs, patience=raw.patience,
                   timeout_seconds=raw.timeout_seconds, price_response=raw.price_response,
                   pool_trials=raw.pool_trials, final_fit_rows=raw.final_fit_rows, order_rate_prior=prior,
                   search_space=space)


@dataclass(frozen=True)
class _RawTuneSettings:
    """The section as written, before its two nested values are parsed (the keys :class:`TuneSettings` takes)."""

    n_trials: Any
    max_epochs: Any
    patience: Any
    timeout_seconds: Any
    price_response: Any
    pool_trials: Any
    final_fit_rows: Any
    order_rate_prior: Any
    search_space: Any


class TuningTimeout(ValueError):
    """Tuning exceeded its time limit; no model is written rather than one from fewer trials."""


@dataclass(frozen=True)
class TuningResult:
    """Outcome of :func:`tune`: the best configuration retrained from scratch and the study record."""

    best_params: dict[str, Any]
    network: nn.Module
    train_result: TrainResult
    n_trials_complete: int
    n_trials_pruned: int
    n_trials_failed: int
    trials: list[dict[str, Any]] = field(default_factory=list)
    price_response: PriceResponseFit | None = None
    # The selected network's predictions on the validation rows before any final refit on them: out-of-sample,
    # what the validation metrics report.
    validation_prediction: np.ndarray = field(default_factory=lambda: np.empty(0))
    # The rows the served output layer was solved on ("train" or "train_and_validation"); the price weights
    # always come from the training rows.
    final_fit_rows: str = "train"


def _range(key: str, value: Any, kind: str) -> list[Any]:
    form = {
        "int_range": "[low, high] ints",
        "float_range": "[low, high] numbers",
        "log_range": "[low, high] numbers > 0",
    }[kind]
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"search_space[{key!r}]={value!r} is invalid; expected {form}")
    check = is_whole_number if kind == "int_range" else is_real_number
    if not all(check(bound) for bound in value):
        # PyYAML reads 1e-4 (no dot) as a string; 1.0e-4 is a float.
        hint = " (in YAML write 1.0e-4, not 1e-4)" if any(isinstance(b, str) for b in value) else ""
        raise ValueError(f"search_space[{key!r}]={value!r} is invalid; expected {form}{hint}")
    low, high = value
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise ValueError(f"search_space[{key!r}]={value!r} is invalid; expected {form} with low <= high")
    return [int(low), int(high)] if kind == "int_range" else [float(low), float(high)]


def _choices(key: str, value: Any) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple) or len(value) == 0:
        raise ValueError(f"search_space[{key!r}]={value!r} is invalid; expected a non-empty list of choices")
    choices = to_plain_types(list(value), f"search_space[{key!r}]")
    if len({repr(choice) for choice in choices}) != len(choices):
        raise ValueError(f"search_space[{key!r}]={value!r} repeats a choice; list each option once")
    return choices


def validate_search_space(search_space: Mapping[str, Any]) -> dict[str, list[Any]]:
    """Check ``search_space`` (as in params.yaml) and return it as plain lists.

    Ranges are ``[low, high]`` (n_layers, units: ints; dropout: floats in [0, 1); learning_rate: > 0,
    sampled log-uniformly); batch_norm, optimizer and batch_size are lists of choices.
    """
    if not isinstance(search_space, Mapping):
        raise ValueError(f"search_space must be a mapping, got {type(search_space).__name__}")
    unknown = sorted(set(search_space) - set(SEARCH_SPACE_KINDS))
    if unknown:
        raise ValueError(f"search_space has unknown keys {unknown}; accepted: {sorted(SEARCH_SPACE_KINDS)}")
    missing = [key for key in SEARCH_SPACE_KINDS if key not in search_space]
    if missing:
        raise ValueError(f"search_space is missing keys {missing}; required: {sorted(SEARCH_SPACE_KINDS)}")

    space: dict[str, list[Any]] = {}
    for key, kind in SEARCH_SPACE_KINDS.items():
        value = search_space[key]
        space[key] = _choices(key, value) if kind == "choice" else _range(key, value, kind)

    if space["n_layers"][0] < 1:
        raise ValueError(f"search_space['n_layers']={space['n_layers']} is invalid; layers must be >= 1")
    if space["units"][0] < 1:
        raise ValueError(f"search_space['units']={space['units']} is invalid; units must be >= 1")
    if not (0.0 <= space["dropout"][0] and space["dropout"][1] < 1.0):
        raise ValueError(f"search_space['dropout']={space['dropout']} is invalid; dropout must lie in [0, 1)")
    if space["learning_rate"][0] <= 0.0:
        raise ValueError(
            f"search_space['learning_rate']={space['learning_rate']} is invalid; it is sampled "
            "log-uniformly, so low must be > 0"
        )
    if not all(isinstance(choice, bool) for choice in space["batch_norm"]):
        raise ValueError(
            f"search_space['batch_norm']={space['batch_norm']} is invalid; choices are true/false"
        )
    bad_optimizers = [choice for choice in space["optimizer"] if choice not in OPTIMIZERS]
    if bad_optimizers:
        raise ValueError(
            f"search_space['optimizer'] holds {bad_optimizers}; accepted: {', '.join(OPTIMIZERS)}"
        )
    if not all(is_whole_number(choice) and choice >= 1 for choice in space["batch_size"]):
        raise ValueError(
            f"search_space['batch_size']={space['batch_size']} is invalid; choices are ints >= 1"
        )
    return space


def _suggest(trial: optuna.Trial, space: Mapping[str, list[Any]]) -> dict[str, Any]:
    """Sample one configuration; units and dropout are drawn per layer (``units_l0``, ``dropout_l0`` ...)."""
    n_layers = trial.suggest_int("n_layers", *space["n_layers"])
    return {
        "n_layers": n_layers,
        "units": [trial.suggest_int(f"units_l{layer}", *space["units"]) for layer in range(n_layers)],
        "dropout": [trial.suggest_float(f"dropout_l{layer}", *space["dropout"]) for layer in range(n_layers)],
        "batch_norm": trial.suggest_categorical("batch_norm", space["batch_norm"]),
        "learning_rate": trial.suggest_float("learning_rate", *space["learning_rate"], log=True),
        "optimizer": trial.suggest_categorical("optimizer", space["optimizer"]),
        "batch_size": trial.suggest_categorical("batch_size", space["batch_size"]),
    }


def _params_from_flat(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Expand Optuna's flat per-layer parameters into the config used by build_network/train_network."""
    n_layers = int(flat["n_layers"])
    return to_plain_types(
        {
            "n_layers": n_layers,
            "units": [flat[f"units_l{layer}"] for layer in range(n_layers)],
            "dropout": [flat[f"dropout_l{layer}"] for layer in range(n_layers)],
            "batch_norm": flat["batch_norm"],
            "learning_rate": flat["learning_rate"],
            "optimizer": flat["optimizer"],
            "batch_size": flat["batch_size"],
        },
        "best_params",
    )


def _fit(
    params: Mapping[str, Any],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    max_epochs: int,
    patience: int,
    seed: int,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[nn.Module, TrainResult, PriceResponseFit | None]:
    """Train one config; a price-response network then gets its output layer and price weights by least squares
    on the training rows, and its validation loss is the refit model's (what the tuner compares)."""
    # Same seed for every trial and for the final refit: the refit of the best trial reproduces it exactly.
    set_seed(seed)
    network = build_network(int(np.asarray(X_train).shape[1]), params)
    result = train_network(
        network,
        X_train,
        y_train,
        X_val,
        y_val,
        learning_rate=params["learning_rate"],
        optimizer=params["optimizer"],
        batch_size=params["batch_size"],
        max_epochs=max_epochs,
        patience=patience,
        seed=seed,
        on_epoch=on_epoch,
    )
    if not isinstance(network, PriceResponseNetwork):
        return network, result, None
    fit = refit_price_response(network, X_train, y_train)
    val_loss = float(np.mean((predict(network, X_val) - np.asarray(y_val, dtype=np.float64).reshape(-1)) ** 2))
    if not math.isfinite(val_loss):
        raise TrainingDivergedError(f"validation loss became {val_loss} after the price-response refit")
    return network, replace(result, best_val_loss=val_loss), fit


def tune(
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    search_space: Mapping[str, Any],
    n_trials: int,
    max_epochs: int,
    patience: int,
    timeout_seconds: float | None,
    seed: int,
    price_columns: Sequence[int] | None = None,
    pool_trials: int = 1,
    final_fit_rows: str = "train",
) -> TuningResult:
    """Search the space with a seeded TPE sampler and median pruning, then retrain the best config.

    Each trial trains with early stopping and reports its validation loss per epoch to the pruner;
    its value is the best validation loss. Trials whose loss diverges are recorded as failed. The
    study runs one trial at a time (``n_jobs=1``), which is what makes a seed reproducible.
    The budget is ``n_trials`` and ``max_epochs``, so the same inputs give the same model however busy the
    machine is. ``timeout_seconds`` is a limit, not a budget: checked after each trial, exceeding it fails the
    tuning with :class:`TuningTimeout` rather than quietly returning a model from fewer trials.
    ``price_columns`` (indices of the price features) makes every trial a price-response network whose demand
    cannot rise with the price (:class:`pricetrail.modeling.network.PriceResponseNetwork`); None keeps the plain MLP.
    ``pool_trials`` > 1 widens the served price response's covariance by how much the price weights differ
    between the best ``pool_trials`` complete trials (:func:`pricetrail.modeling.network.pool_price_responses`).
    ``final_fit_rows="train_and_validation"``: once validation has picked the trial and the stopping epoch, the
    served price-response network's output layer (context weights and level) is solved again on the training
    *and* validation rows, its price weights held as the training rows read them
    (:func:`pricetrail.modeling.refit.refit_output_layer`): the validation rows are the newest before the test split.
    The test split stays unseen; the validation metrics are taken before this refit (``validation_prediction``).
    """
    space = validate_search_space(search_space)
    if not is_whole_number(n_trials) or n_trials < 1:
        raise ValueError(f"n_trials={n_trials!r} is invalid; expected an int >= 1")
    for name, value in (("max_epochs", max_epochs), ("patience", patience)):
        if not is_whole_number(value) or value < 1:
            raise ValueError(f"{name}={value!r} is invalid; expected an int >= 1")
    if timeout_seconds is not None and not (is_real_number(timeout_seconds) and timeout_seconds > 0):
        raise ValueError(f"timeout_seconds={timeout_seconds!r} is invalid; expected a number > 0 or null")
    if not is_whole_number(seed):
        raise ValueError(f"seed={seed!r} is invalid; expected an int")
    if not is_whole_number(pool_trials) or pool_trials < 1:
        raise ValueError(f"pool_trials={pool_trials!r} is invalid; expected an int >= 1 (1: no pooling)")
    if final_fit_rows not in FINAL_FIT_ROWS:
        raise ValueError(f"final_fit_rows={final_fit_rows!r} is not accepted; use one of {list(FINAL_FIT_ROWS)}")

    structure = {} if price_columns is None else {"price_columns": sorted(int(c) for c in price_columns)}

    def objective(trial: optuna.Trial) -> float:
        params = {**_suggest(trial, space), **structure}

        def report(epoch: int, val_loss: float) -> None:
            trial.report(val_loss, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch} with val_loss={val_loss:.6f}")

        _, result, fit = _fit(
            params,
            X_train,
            y_train,
            X_val,
            y_val,
            max_epochs=max_epochs,
            patience=patience,
            seed=seed,
            on_epoch=report,
        )
        if fit is not None:
            trial.set_user_attr(PRICE_WEIGHTS_ATTR, fit.beta)
        return result.best_val_loss

    started = time.monotonic()

    def log_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        logger.info(
            "trial %d %s value=%s params=%s", trial.number, trial.state.name, trial.value, trial.params
        )
        elapsed = time.monotonic() - started
        if timeout_seconds is not None and elapsed > timeout_seconds and trial.number + 1 < n_trials:
            raise TuningTimeout(
                f"tuning took {elapsed:.0f} s for {trial.number + 1} of {n_trials} trials, over "
                f"tune_primary_model.timeout_seconds={timeout_seconds:g}; the result would depend on the machine's "
                "speed, so none is written: raise timeout_seconds or lower n_trials / max_epochs"
            )

    previous_verbosity = optuna.logging.get_verbosity()
    # Optuna logs every trial at INFO; our own callback logs one line per trial instead.
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            direction="minimize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            # No pruning before a trial has had `patience` epochs: early stopping would not stop it either.
            pruner=optuna.pruners.MedianPruner(
                n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=patience
            ),
        )
        study.optimize(
            objective,
            n_trials=n_trials,
            n_jobs=1,
            catch=(TrainingDivergedError,),
            callbacks=[log_trial],
            gc_after_trial=False,
        )
    finally:
        optuna.logging.set_verbosity(previous_verbosity)

    states = optuna.trial.TrialState
    counts = {state: sum(1 for trial in study.trials if trial.state == state) for state in states}
    if counts[states.COMPLETE] == 0:
        raise RuntimeError(
            f"no tuning trial completed ({counts[states.PRUNED]} pruned, {counts[states.FAIL]} failed "
            f"of {len(study.trials)}); widen the search space, lower the learning rate range or raise "
            "n_trials/timeout_seconds"
        )
    best_params = {**_params_from_flat(study.best_trial.params), **structure}
    logger.info(
        "best trial %d val_loss=%.6f params=%s; retraining it from scratch",
        study.best_trial.number,
        study.best_value,
        best_params,
    )
    network, train_result, price_fit = _fit(
        best_params, X_train, y_train, X_val, y_val, max_epochs=max_epochs, patience=patience, seed=seed
    )
    validation_prediction = predict(network, X_val)
    if price_fit is not None and final_fit_rows == "train_and_validation":
        assert isinstance(network, PriceResponseNetwork)  # a price fit comes only from one
        refit_output_layer(network, np.vstack([np.asarray(X_train), np.asarray(X_val)]),
                           np.concatenate([np.asarray(y_train).reshape(-1), np.asarray(y_val).reshape(-1)]))
    if price_fit is not None and pool_trials > 1:
        ranked = sorted((t for t in study.trials if t.state == states.COMPLETE and PRICE_WEIGHTS_ATTR in t.user_attrs),
                        key=lambda t: (float(t.value), t.number))
        price_fit = pool_price_responses(price_fit, [t.user_attrs[PRICE_WEIGHTS_ATTR] for t in ranked[:pool_trials]])
    trials = [
        {
            "number": trial.number,
            "state": trial.state.name,
            "value": None if trial.value is None else float(trial.value),
            "params": to_plain_types(trial.params, f"trial {trial.number} params"),
            **({"price_weights": [float(w) for w in trial.user_attrs[PRICE_WEIGHTS_ATTR]]}
               if PRICE_WEIGHTS_ATTR in trial.user_attrs else {}),
        }
        for trial in study.trials
    ]
    return TuningResult(
        best_params=best_params,
        network=network,
        train_result=train_result,
        n_trials_complete=counts[states.COMPLETE],
        n_trials_pruned=counts[states.PRUNED],
        n_trials_failed=counts[states.FAIL],
        trials=trials,
        price_response=price_fit,
        validation_prediction=validation_prediction,
        final_fit_rows=final_fit_rows if price_fit is not None else "train",
    )
