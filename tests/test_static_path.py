"""The static path never imports torch/tensorflow, and its facts hold on awkward input."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lintutil import ROOT, codes, lint


def test_check_imports_no_torch_or_tensorflow():
    target = ROOT / "fixtures" / "torch_stock_lstm_noclip.py"
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rnnlint", "check", "--no-config", "--no-cache", str(target)],
        capture_output=True, text=True,
    )
    modules = {line.split("|")[-1].strip().split(".")[0] for line in proc.stderr.splitlines() if "|" in line}
    assert "libcst" in modules  # the measurement works
    assert not modules & {"torch", "tensorflow", "keras", "numpy"}


def test_crlf_line_numbers_are_right():
    source = "import torch\r\nfrom torch import nn\r\n\r\nrnn = nn.LSTM(4, 8, dropout=0.5)\r\n"
    assert [(f.code, f.line, f.column) for f in lint(source)] == [("RNN401", 4, 7)]


def test_values_through_argparse_constants_init_args_and_configs():
    source = '''
    import argparse
    from dataclasses import dataclass
    import torch.nn as nn

    LAYERS = 1
    parser = argparse.ArgumentParser()
    parser.add_argument("--drop", type=float, default=0.25)
    args = parser.parse_args()

    @dataclass
    class Config:
        hidden: int = 64
        dropout: float = 0.4

    cfg = Config()
    params = {"dropout": 0.3, "layers": 1}

    class Model(nn.Module):
        def __init__(self, layers, dropout=0.0):
            super().__init__()
            self.gru = nn.GRU(8, 16, num_layers=layers, dropout=dropout)

    a = nn.LSTM(8, 16, num_layers=LAYERS, dropout=args.drop)
    b = nn.LSTM(8, cfg.hidden, dropout=cfg.dropout)
    c = nn.LSTM(8, 16, num_layers=params["layers"], dropout=params.get("dropout"))
    m = Model(1, dropout=0.2)
    '''
    assert [(f.code, f.line) for f in lint(source)] == [
        ("RNN401", 22), ("RNN401", 24), ("RNN401", 25), ("RNN401", 26)
    ]


def test_unknown_values_stay_silent():
    source = '''
    import sys
    import torch.nn as nn

    def build(layers):
        return nn.LSTM(8, 16, num_layers=layers, dropout=0.3)

    class Model(nn.Module):          # never constructed here: its defaults are a guess
        def __init__(self, layers=1, dropout=0.3):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, num_layers=layers, dropout=dropout)

    n = int(sys.argv[1])
    rnn = nn.GRU(8, 16, num_layers=n, dropout=0.3)
    '''
    assert codes(source) == []


def test_conflicting_construction_sites_stay_silent():
    source = '''
    import torch.nn as nn

    class Model(nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.lstm = nn.LSTM(8, 16, num_layers=layers, dropout=0.3)

    small = Model(1)
    big = Model(3)
    '''
    assert codes(source) == []


def test_files_without_framework_words_are_not_parsed():
    # Not even valid Python, yet no error: the pre-filter skips it before parsing.
    from rnnlint.config import Config
    from rnnlint.engine import check_source

    assert check_source("x.py", "def f(:\n", Config()).errors == []
    assert check_source("x.py", "import torch\ndef f(:\n", Config()).errors


def test_builder_function_parameters_take_the_value_every_call_passes():
    from lintutil import lint

    builder = '''
import torch.nn as nn


def make_encoder(n_in, hidden, layers=2, dropout=0.3):
    return nn.LSTM(n_in, hidden, num_layers=layers, dropout=dropout, batch_first=True)


encoder = make_encoder(16, 64, layers={layers})
'''
    assert [(f.code, f.line) for f in lint(builder.format(layers=1))] == [("RNN401", 6)]
    assert lint(builder.format(layers=2)) == []
    # Calls that disagree, or no call at all: the value is unknown and the rule is silent.
    assert lint(builder.format(layers=1) + "decoder = make_encoder(64, 64, layers=2)\n") == []
    assert lint(builder.format(layers=1).replace("encoder = make_encoder(16, 64, layers=1)", "")) == []


def test_keras_builder_config_dict_argument_reaches_the_layers():
    from lintutil import lint

    src = '''
from tensorflow import keras
from tensorflow.keras import layers

HPARAMS = {"units": 64, "return_seq": False}


def build_model(hp, n_features=8):
    model = keras.Sequential([
        layers.Input(shape=(30, n_features)),
        layers.LSTM(hp["units"], return_sequences=hp["return_seq"]),
        layers.LSTM(hp["units"] // 2),
        layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(1e-3, clipnorm=1.0), loss="mse")
    return model


model = build_model(HPARAMS)
'''
    assert [(f.code, f.line) for f in lint(src)] == [("RNN510", 11)]
    assert lint(src.replace('"return_seq": False', '"return_seq": True')) == []


@pytest.mark.parametrize(
    "spelling, prefix",
    [
        ("import keras", "keras"),
        ("from tensorflow import keras", "keras"),
        ("import tensorflow as tf", "tf.keras"),
        ("import tf_keras as keras", "keras"),
        ("import keras_core as keras", "keras"),
    ],
)
def test_every_keras_spelling_reaches_the_rules(spelling, prefix):
    source = f'''
    {spelling}
    model = {prefix}.Sequential([{prefix}.layers.LSTM(32, input_shape=(20, 3)), {prefix}.layers.Dense(1)])
    model.compile(loss="mse", optimizer={prefix}.optimizers.RMSprop(learning_rate=0.01))
    '''
    assert [(f.code, f.line) for f in lint(source)] == [("RNN101", 4)]
