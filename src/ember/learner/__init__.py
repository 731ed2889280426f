"""The training engine: `Learner`, its callbacks, optimizers and schedules."""

from __future__ import annotations

from ember.learner.callback import (
    EVENTS,
    Callback,
    CancelBackwardException,
    CancelBatchException,
    CancelEpochException,
    CancelFitException,
    CancelStepException,
    CancelTrainException,
    CancelValidException,
)
from ember.learner.callbacks import (
    BnFreeze,
    ChannelsLast,
    CSVLogger,
    EarlyStoppingCallback,
    GatherPreds,
    GradientAccumulation,
    GradientClip,
    MCDropoutCallback,
    ReduceLROnPlateau,
    SaveModelCallback,
    ShortEpochCallback,
    TensorBoardCallback,
    TerminateOnNaNCallback,
    TrackerCallback,
)
from ember.learner.checkpoint import CheckpointCallback
from ember.learner.hooks import ActivationStats, Hook, Hooks, hook_output, hook_outputs
from ember.learner.learner import Learner
from ember.learner.lr_find import LRFinder, suggest_lrs
from ember.learner.mixup import CutMix, MixUp
from ember.learner.optim import SGD, Adam, RMSprop
from ember.learner.optimizers import Lamb, Larc, Lookahead, QHAdam, RAdam, ranger
from ember.learner.progress import ProgressCallback
from ember.learner.recorder import Recorder
from ember.learner.schedule import ParamScheduler

__all__ = [
    "Learner",
    "Callback",
    "EVENTS",
    "CancelFitException",
    "CancelEpochException",
    "CancelTrainException",
    "CancelValidException",
    "CancelBatchException",
    "CancelBackwardException",
    "CancelStepException",
    "Recorder",
    "ProgressCallback",
    "ParamScheduler",
    "LRFinder",
    "suggest_lrs",
    "GatherPreds",
    "GradientAccumulation",
    "GradientClip",
    "ChannelsLast",
    "TrackerCallback",
    "EarlyStoppingCallback",
    "SaveModelCallback",
    "ReduceLROnPlateau",
    "CSVLogger",
    "TensorBoardCallback",
    "TerminateOnNaNCallback",
    "BnFreeze",
    "ShortEpochCallback",
    "MCDropoutCallback",
    "CheckpointCallback",
    "MixUp",
    "Hook",
    "Hooks",
    "hook_output",
    "hook_outputs",
    "ActivationStats",
    "CutMix",
    "Adam",
    "SGD",
    "RMSprop",
    "RAdam",
    "QHAdam",
    "Lamb",
    "Lookahead",
    "Larc",
    "ranger",
]
