"""RNN503-506, RNN510, RNN511, RNN514: tensor layout around recurrent layers.

Each firing case asserts the exact code and line; each near-miss asserts silence for the
code under test (other rules may fire on these short snippets, which is not what they test)."""

from __future__ import annotations

import pytest

from lintutil import lint


def lines(source: str, code: str):
    return [f.line for f in lint(source) if f.code == code]


def message(source: str, code: str) -> str:
    found = [f.message for f in lint(source) if f.code == code]
    assert len(found) == 1, found
    return found[0]


# -- RNN503 state-type-mismatch ------------------------------------------------------------

LSTM_SINGLE_STATE = '''
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 32, num_layers=2, batch_first=True)

    def forward(self, x):
        h0 = torch.zeros(2, x.size(0), 32, device=x.device)
        out, _ = self.rnn(x, h0)
        return out
'''

GRU_TUPLE_STATE = '''
import torch
from torch import nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(8, 32)

    def forward(self, x):
        h0 = torch.zeros(1, x.size(1), 32)
        c0 = torch.zeros(1, x.size(1), 32)
        out, h = self.gru(x, (h0, c0))
        return out
'''

INIT_HIDDEN_SINGLE = '''
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(4, hidden)

    def init_hidden(self, batch):
        return torch.zeros(1, batch, self.hidden)

    def forward(self, x):
        state = self.init_hidden(x.size(1))
        out, state = self.lstm(x, state)
        return out
'''

CELL_STATES = '''
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.cell = nn.GRUCell(4, 16)

    def forward(self, x):
        h = torch.zeros(x.size(0), 16)
        c = torch.zeros(x.size(0), 16)
        for t in range(x.size(1)):
            h = self.cell(x[:, t], (h, c))
        return h
'''


@pytest.mark.parametrize(
    "source,line",
    [(LSTM_SINGLE_STATE, 13), (GRU_TUPLE_STATE, 14), (INIT_HIDDEN_SINGLE, 17), (CELL_STATES, 15)],
    ids=["lstm-single", "gru-tuple", "init-hidden", "grucell-tuple"],
)
def test_rnn503_fires(source, line):
    assert lines(source, "RNN503") == [line]


def test_rnn503_message_names_layer_and_state():
    text = message(LSTM_SINGLE_STATE, "RNN503")
    assert "'self.rnn' is an nn.LSTM" in text and "h0" in text


def test_rnn503_silent_on_correct_and_unknown_states():
    source = '''
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self, kind):
            super().__init__()
            self.lstm = nn.LSTM(8, 32)
            self.gru = nn.GRU(8, 32)

        def forward(self, x, hidden):
            h0 = torch.zeros(1, x.size(1), 32)
            out, (h, c) = self.lstm(x, (h0, h0.clone()))
            out2, h2 = self.gru(x, h0)
            out3, hidden = self.lstm(x, hidden)       # a parameter: unknown
            out4, hidden2 = self.lstm(x, hidden)      # LSTM output state fed back: a tuple
            out5, hidden2 = self.lstm(x, hidden2)
            out6, h3 = self.gru(x, None)
            return out, out2, out3, out4, out5, out6
    '''
    assert lines(source, "RNN503") == []


def test_rnn503_silent_when_layer_name_is_rebound():
    # word_language_model style: self.rnn is an LSTM or an RNN depending on an argument.
    source = '''
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self, rnn_type):
            super().__init__()
            if rnn_type in ("LSTM", "GRU"):
                self.rnn = getattr(nn, rnn_type)(8, 32)
            else:
                self.rnn = nn.RNN(8, 32)

        def forward(self, x):
            h = (torch.zeros(1, x.size(1), 32), torch.zeros(1, x.size(1), 32))
            return self.rnn(x, h)
    '''
    assert lines(source, "RNN503") == []


# -- RNN504 last-step-wrong-axis -----------------------------------------------------------

BATCH_FIRST_OUT_MINUS_ONE = '''
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 64, batch_first=True)
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[-1])
'''

TIME_MAJOR_COLON_MINUS_ONE = '''
import torch.nn as nn

HIDDEN = 64


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, HIDDEN, num_layers=2)
        self.fc = nn.Linear(HIDDEN, 1)

    def forward(self, x):
        output, hidden = self.gru(x)
        last = output[:, -1, :]
        return self.fc(last)
'''

REASSIGNED_OUT = '''
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.RNN(input_size=3, hidden_size=16, batch_first=True)
        self.fc = nn.Linear(16, 1)

    def forward(self, x):
        out, h = self.rnn(x)
        out = out[-1, :, :]
        out = self.fc(out)
        return out
'''


@pytest.mark.parametrize(
    "source,line",
    [(BATCH_FIRST_OUT_MINUS_ONE, 13), (TIME_MAJOR_COLON_MINUS_ONE, 15), (REASSIGNED_OUT, 13)],
    ids=["batch-first-out[-1]", "time-major-out[:,-1,:]", "reassigned"],
)
def test_rnn504_fires(source, line):
    assert lines(source, "RNN504") == [line]


def test_rnn504_message():
    assert "use out[:, -1]" in message(BATCH_FIRST_OUT_MINUS_ONE, "RNN504")
    assert "use out[-1]" in message(TIME_MAJOR_COLON_MINUS_ONE, "RNN504")


def test_rnn504_silent_on_right_axis_and_unknown_layout():
    source = '''
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self, batch_first):
            super().__init__()
            self.a = nn.LSTM(4, 64, batch_first=True)
            self.b = nn.LSTM(4, 64)
            self.c = nn.LSTM(4, 64, batch_first=batch_first)

        def forward(self, x, y, z):
            out_a, _ = self.a(x)
            out_b, _ = self.b(y)
            out_c, _ = self.c(z)
            out_p, _ = self.a(x)
            out_p = out_p.permute(1, 0, 2)
            return out_a[:, -1], out_b[-1], out_c[-1], out_c[:, -1], out_p[-1], out_a[-1][-1]
    '''
    assert lines(source, "RNN504") == []


def test_rnn504_silent_for_batch_of_one():
    # The tutorial tagger: time-major input of batch 1, every step's output is used.
    source = '''
    import torch.nn as nn


    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 6)

        def forward(self, embeds):
            lstm_out, _ = self.lstm(embeds.view(len(embeds), 1, -1))
            return lstm_out[:, -1]
    '''
    assert lines(source, "RNN504") == []


# -- RNN505 bidirectional-last-step --------------------------------------------------------

BIDIR_BATCH_FIRST = '''
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(100, 128, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(256, 2)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1, :])
'''

BIDIR_TIME_MAJOR = '''
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.gru = nn.GRU(40, hidden, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(hidden * 2, 10)

    def forward(self, x):
        out, _ = self.gru(x)
        summary = out[-1]
        return self.fc(summary)


model = Model(hidden=64)
'''

BIDIR_SCRIPT_LEVEL_LOCAL = '''
import torch
import torch.nn as nn


def encode(x):
    rnn = nn.GRU(12, 24, batch_first=True, bidirectional=True)
    out, h = rnn(x)
    return out[:, -1]
'''


@pytest.mark.parametrize(
    "source,line",
    [(BIDIR_BATCH_FIRST, 13), (BIDIR_TIME_MAJOR, 13), (BIDIR_SCRIPT_LEVEL_LOCAL, 9)],
    ids=["batch-first", "time-major", "local-layer"],
)
def test_rnn505_fires(source, line):
    assert lines(source, "RNN505") == [line]
    assert lines(source, "RNN504") == []


def test_rnn505_silent_on_pooling_states_and_wrong_axis():
    source = '''
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(10, 32, batch_first=True, bidirectional=True)
            self.uni = nn.LSTM(10, 32, batch_first=True)

        def forward(self, x):
            out, (h_n, _) = self.lstm(x)
            pooled = out.mean(dim=1)
            mixed = torch.cat([out[:, -1, :32], out[:, 0, 32:]], dim=1)
            both = torch.cat([out[:, -1], out[:, 0]], dim=1)
            u, _ = self.uni(x)
            return pooled, mixed, both, torch.cat([h_n[-2], h_n[-1]], 1), u[:, -1]
    '''
    assert lines(source, "RNN505") == []
    # out[-1] on a batch-first bidirectional output is the wrong axis: RNN504, not RNN505.
    wrong_axis = BIDIR_BATCH_FIRST.replace("out[:, -1, :]", "out[-1]")
    assert lines(wrong_axis, "RNN505") == [] and lines(wrong_axis, "RNN504") == [13]


# -- RNN506 head-size-mismatch -------------------------------------------------------------

HEAD_BIDIR_CAT = '''
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self, vocab, emb, hidden, out_dim):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.LSTM(emb, hidden, num_layers=2, bidirectional=True)
        self.fc = nn.Linear(hidden, out_dim)
        self.dropout = nn.Dropout(0.5)

    def forward(self, text):
        embedded = self.dropout(self.embedding(text))
        output, (hidden, cell) = self.rnn(embedded)
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


model = Model(25000, 100, 256, 1)
'''

HEAD_PROJ = '''
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(16, 512, proj_size=128, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(0.1), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 1))

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])
'''

HEAD_BIDIR_OUTPUT = '''
import torch.nn as nn

HIDDEN = 128


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(40, HIDDEN, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(in_features=HIDDEN, out_features=5)

    def forward(self, x):
        out, _ = self.gru(x)
        return self.fc(out)
'''


@pytest.mark.parametrize(
    "source,line",
    [(HEAD_BIDIR_CAT, 11), (HEAD_PROJ, 9), (HEAD_BIDIR_OUTPUT, 11)],
    ids=["cat-of-states", "proj-size-sequential", "bidir-output"],
)
def test_rnn506_fires(source, line):
    assert lines(source, "RNN506") == [line]


def test_rnn506_message_names_both_sizes():
    text = message(HEAD_BIDIR_CAT, "RNN506")
    assert "in_features=256" in text and "256 + 256 = 512" in text


def test_rnn506_silent_on_matching_and_unknown_widths():
    source = '''
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self, hidden, bidirectional, extra):
            super().__init__()
            self.a = nn.LSTM(8, hidden, batch_first=True, bidirectional=True)
            self.b = nn.GRU(8, hidden, batch_first=True, bidirectional=bidirectional)
            self.fa = nn.Linear(hidden * 2, 1)
            self.fb = nn.Linear(hidden, 1)
            self.fc = nn.Linear(hidden * 2 + extra, 1)
            self.fd = nn.Linear(hidden, 1)

        def forward(self, x, feats):
            out_a, (h_a, _) = self.a(x)
            out_b, h_b = self.b(x)
            pooled = out_a.contiguous().view(-1, 64)
            return (self.fa(out_a[:, -1]), self.fb(out_b[:, -1]),
                    self.fc(torch.cat([out_a[:, -1], feats], dim=1)), self.fd(pooled),
                    self.fa(torch.cat([h_a[-2], h_a[-1]], dim=-1)))


    model = Model(64, True, 3)
    baseline = Model(64, False, 3)  # bidirectional differs between sites: unknown
    '''
    assert lines(source, "RNN506") == []


def test_rnn506_silent_when_branches_disagree():
    source = '''
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 32, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(64, 1)

        def forward(self, x, mode):
            _, (h, _) = self.lstm(x)
            if mode:
                h = torch.cat([h[-2], h[-1]], dim=1)
            else:
                h = h.transpose(0, 1).reshape(x.size(0), -1)
            return self.fc(h)
    '''
    assert lines(source, "RNN506") == []


# -- RNN510 keras-stacked-without-sequences ------------------------------------------------

KERAS_ADD = '''
from keras.models import Sequential
from keras.layers import LSTM, Dense, Dropout

model = Sequential()
model.add(LSTM(50, input_shape=(60, 1)))
model.add(Dropout(0.2))
model.add(LSTM(50))
model.add(Dense(1))
model.compile(optimizer="adam", loss="mse")
'''

KERAS_LIST_BIDIR = '''
import tensorflow as tf

model = tf.keras.Sequential([
    tf.keras.layers.Input(shape=(100, 8)),
    tf.keras.layers.GRU(64, return_sequences=True),
    tf.keras.layers.Bidirectional(tf.keras.layers.GRU(32)),
    tf.keras.layers.BatchNormalization(),
    tf.keras.layers.GRU(16),
    tf.keras.layers.Dense(1),
])
'''

KERAS_FUNCTIONAL_NAMES = '''
from tensorflow import keras
from tensorflow.keras import layers

inputs = keras.Input(shape=(30, 4))
x = layers.LSTM(64, return_sequences=False)(inputs)
x = layers.Dropout(0.3)(x)
x = layers.LSTM(32)(x)
outputs = layers.Dense(1)(x)
model = keras.Model(inputs, outputs)
'''


@pytest.mark.parametrize(
    "source,line",
    [(KERAS_ADD, 6), (KERAS_LIST_BIDIR, 7), (KERAS_FUNCTIONAL_NAMES, 6)],
    ids=["add-run", "list-bidirectional", "functional"],
)
def test_rnn510_fires(source, line):
    assert lines(source, "RNN510") == [line]


def test_rnn510_silent_on_return_sequences_dense_between_and_branches():
    source = '''
    from keras.models import Sequential
    from keras.layers import LSTM, GRU, Dense, RepeatVector, TimeDistributed


    def build(deep, units):
        model = Sequential()
        if deep:
            model.add(LSTM(64, return_sequences=True, input_shape=(20, 3)))
            model.add(LSTM(32))
        else:
            model.add(LSTM(64, input_shape=(20, 3)))
        model.add(Dense(1))
        return model


    encoder_decoder = Sequential([
        LSTM(64, input_shape=(20, 3)),
        RepeatVector(5),
        LSTM(64, return_sequences=True),
        TimeDistributed(Dense(1)),
    ])
    unknown = Sequential([GRU(32, return_sequences=units_flag), GRU(16)])
    mlp_between = Sequential([LSTM(8, input_shape=(5, 1)), Dense(8), Dense(1)])
    '''
    assert lines(source, "RNN510") == []


def test_rnn510_sequential_list_then_add():
    source = '''
    from keras.models import Sequential
    from keras.layers import GRU, Dense

    model = Sequential([GRU(32, input_shape=(10, 2))])
    model.add(GRU(16))
    model.add(Dense(1))
    '''
    assert lines(source, "RNN510") == [5]


CONFIG_BUILDER = '''
from keras.models import Sequential
from keras.layers import LSTM, Dense

CONFIG = {"units": 64, "seq": False}
OTHER = {"units": 64, "seq": True}


def build(cfg):
    return Sequential([LSTM(cfg["units"], return_sequences=cfg["seq"]), LSTM(32), Dense(1)])


{calls}
'''


@pytest.mark.parametrize(
    "calls",
    [
        "model = build(CONFIG)",
        # every call passes the same config: the same dict literal, read at two sites
        "model = build(CONFIG)\nfinal_model = build(CONFIG)",
        "for fold in range(5):\n    model = build(cfg=CONFIG)\n\n\ndef refit():\n    return build(CONFIG)",
        "config = CONFIG\nmodel = build(config)\nbest = build(CONFIG)",
    ],
    ids=["one-call", "two-calls", "loop-and-function", "alias"],
)
def test_rnn510_return_sequences_from_a_config_argument(calls):
    assert lines(CONFIG_BUILDER.replace("{calls}", calls), "RNN510") == [10]


def test_rnn510_config_argument_add_run_called_twice():
    source = '''
    from keras.models import Sequential
    from keras.layers import GRU, Dense

    HPARAMS = dict(units=32, stacked_seq=False)


    def make_model(hp, n_features):
        model = Sequential()
        model.add(GRU(hp["units"], return_sequences=hp.get("stacked_seq", True), input_shape=(30, n_features)))
        model.add(GRU(16))
        model.add(Dense(1))
        return model


    model = make_model(HPARAMS, 4)
    eval_model = make_model(HPARAMS, n_features=4)
    '''
    assert lines(source, "RNN510") == [10]


@pytest.mark.parametrize(
    "calls",
    [
        "model = build(OTHER)",
        # different configs at different calls: the value is not one constant
        "model = build(CONFIG)\nother = build(OTHER)",
        # two literals that look alike are not tied to each other: stay silent
        'model = build({"units": 64, "seq": False})\nother = build({"units": 64, "seq": True})',
        # never called here: the config is not known
        "",
        "model = build(load_config())",
    ],
    ids=["true", "mixed", "literals", "uncalled", "loaded"],
)
def test_rnn510_config_argument_silent(calls):
    assert lines(CONFIG_BUILDER.replace("{calls}", calls), "RNN510") == []


# -- RNN511 batch-first-data-mismatch ------------------------------------------------------

LOADER_TIME_MAJOR = '''
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 32, num_layers=2)
        self.fc = nn.Linear(32, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[-1])


windows = np.stack([np.sin(np.arange(i, i + 50)) for i in range(1000)])[..., None]
loader = DataLoader(TensorDataset(torch.tensor(windows), torch.zeros(1000, 1)), batch_size=32, shuffle=True)
model = Net()
for epoch in range(5):
    for xb, yb in loader:
        loss = ((model(xb.float()) - yb) ** 2).mean()
'''

RESHAPE_IN_FORWARD = '''
import torch.nn as nn

SEQ_LEN = 24


class Net(nn.Module):
    def __init__(self, n_features):
        super().__init__()
        self.gru = nn.GRU(n_features, 64)

    def forward(self, x):
        x = x.reshape(-1, SEQ_LEN, 5)
        out, h = self.gru(x)
        return out
'''

EMBEDDING_LOADER = '''
import torch
import torch.nn as nn
from torch.utils.data import DataLoader


class Classifier(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.embed = nn.Embedding(vocab, 64)
        self.rnn = nn.GRU(64, 128)
        self.fc = nn.Linear(128, 2)

    def forward(self, tokens):
        emb = self.embed(tokens)
        _, h = self.rnn(emb)
        return self.fc(h[-1])


def train(dataset):
    model = Classifier(5000)
    train_loader = DataLoader(dataset, batch_size=64, shuffle=True)
    for i, (tokens, labels) in enumerate(train_loader):
        tokens = tokens.to("cpu")
        logits = model(tokens)
'''


@pytest.mark.parametrize(
    "source,line",
    [(LOADER_TIME_MAJOR, 11), (RESHAPE_IN_FORWARD, 10), (EMBEDDING_LOADER, 11)],
    ids=["loader-windows", "reshape-batch-seq", "embedding-loader"],
)
def test_rnn511_fires(source, line):
    assert lines(source, "RNN511") == [line]


def test_rnn511_silent_when_transposed_or_batch_first_or_collated():
    transposed_in_forward = LOADER_TIME_MAJOR.replace("out, _ = self.lstm(x)", "out, _ = self.lstm(x.permute(1, 0, 2))")
    transposed_in_loop = LOADER_TIME_MAJOR.replace("model(xb.float())", "model(xb.transpose(0, 1).float())")
    batch_first = LOADER_TIME_MAJOR.replace("num_layers=2)", "num_layers=2, batch_first=True)")
    collated = EMBEDDING_LOADER.replace("shuffle=True)", "shuffle=True, collate_fn=pad_collate)")
    time_major_view = RESHAPE_IN_FORWARD.replace("x.reshape(-1, SEQ_LEN, 5)", "x.view(SEQ_LEN, -1, 5)")
    for source in (transposed_in_forward, transposed_in_loop, batch_first, collated, time_major_view):
        assert lines(source, "RNN511") == [], source


def test_rnn511_silent_without_evidence_of_layout():
    # A model called on a tensor of unknown layout (a function argument) says nothing.
    source = '''
    import torch.nn as nn


    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(3, 8)

        def forward(self, x):
            out, _ = self.lstm(x)
            return out[-1]


    def predict(model, batch):
        return model(batch)


    model = Net()
    '''
    assert lines(source, "RNN511") == []


FULL_BATCH_WINDOWS = '''
import numpy as np
import torch
import torch.nn as nn

W = 30
series = np.sin(np.linspace(0, 100, 2000))
X = np.stack([series[i:i + W] for i in range(len(series) - W)])[..., None]
y = np.array([series[i + W] for i in range(len(series) - W)])
X_t = torch.tensor(X, dtype=torch.float32)
y_t = torch.tensor(y, dtype=torch.float32)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 64)
        self.fc = nn.Linear(64, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[-1])


model = Model()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
for epoch in range(100):
    optimizer.zero_grad()
    pred = model(X_t)
    loss = ((pred.squeeze() - y_t) ** 2).mean()
    loss.backward()
    optimizer.step()
'''

LAYER_THROUGH_INSTANCE = '''
import numpy as np
import torch
import torch.nn as nn

W = 30
series = np.sin(np.linspace(0, 100, 2000))
X = np.stack([series[i:i + W] for i in range(len(series) - W)])[..., None]
X_t = torch.tensor(X, dtype=torch.float32)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 64)
        self.fc = nn.Linear(64, 1)


model = Model()
out, _ = model.lstm(X_t)
pred = model.fc(out[-1])
'''

CREATE_DATASET = '''
import numpy as np
import pandas as pd
import torch
from torch import nn
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler


def create_dataset(data, look_back):
    xs, ys = [], []
    for i in range(len(data) - look_back):
        xs.append(data[i:i + look_back])
        ys.append(data[i + look_back])
    return np.array(xs), np.array(ys)


df = pd.read_csv("prices.csv")
scaled = MinMaxScaler().fit_transform(df[["Close"]])
X, y = create_dataset(scaled, 60)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, shuffle=False)
X_train = torch.from_numpy(X_train).float()

gru = nn.GRU(1, 32)


def train():
    for epoch in range(50):
        out, h = gru(X_train)


train()
'''

BROWNLEE_RESHAPE = '''
import numpy
import torch
import torch.nn as nn

look_back = 3


def create_dataset(dataset, look_back=1):
    dataX, dataY = [], []
    for i in range(len(dataset) - look_back - 1):
        a = dataset[i:(i + look_back), 0]
        dataX.append(a)
        dataY.append(dataset[i + look_back, 0])
    return numpy.array(dataX), numpy.array(dataY)


trainX, trainY = create_dataset(train, look_back)
trainX = numpy.reshape(trainX, (trainX.shape[0], 1, trainX.shape[1]))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(look_back, 4)
        self.out = nn.Linear(4, 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        return self.out(y[-1])


net = Net()
for epoch in range(100):
    pred = net(torch.Tensor(trainX))
'''


@pytest.mark.parametrize(
    "source,line",
    [(FULL_BATCH_WINDOWS, 17), (LAYER_THROUGH_INSTANCE, 15), (CREATE_DATASET, 24), (BROWNLEE_RESHAPE, 25)],
    ids=["full-batch-model-call", "layer-through-instance", "create-dataset-split", "reshape-3d"],
)
def test_rnn511_fires_on_window_arrays(source, line):
    assert lines(source, "RNN511") == [line]


def test_rnn511_window_array_message():
    text = message(FULL_BATCH_WINDOWS, "RNN511")
    assert "receives X_t (sliding windows stacked one per row by np.stack([series[i:i + W] for i" in text


@pytest.mark.parametrize(
    "old,new",
    [
        # transposed / permuted to (T, N, F) before the call
        ("X_t = torch.tensor(X, dtype=torch.float32)", "X_t = torch.tensor(X, dtype=torch.float32).permute(1, 0, 2)"),
        ("X_t = torch.tensor(X, dtype=torch.float32)", "X_t = torch.tensor(np.transpose(X, (1, 0, 2)), dtype=torch.float32)"),
        ("pred = model(X_t)", "pred = model(X_t.transpose(0, 1))"),
        ("out, _ = self.lstm(x)", "out, _ = self.lstm(x.permute(1, 0, 2))"),
        # the windows' rank is not known: (N, W) or (N, W, F)
        ("[..., None]\n", "\n"),
        # a new first axis: the windows are no longer on axis 0
        ("[..., None]\n", "[None]\n"),
        ("[..., None]\n", ".reshape(W, -1, 1)\n"),
        # not windows: a loaded array of unknown layout
        ("X = np.stack([series[i:i + W] for i in range(len(series) - W)])[..., None]", "X = np.load('x.npy')"),
        # rows picked by an index array
        ("X_t = torch.tensor(X, dtype=torch.float32)", "X_t = torch.tensor(X[order], dtype=torch.float32)"),
        ("nn.LSTM(1, 64)", "nn.LSTM(1, 64, batch_first=True)"),
    ],
)
def test_rnn511_window_arrays_silent(old, new):
    assert old in FULL_BATCH_WINDOWS
    assert lines(FULL_BATCH_WINDOWS.replace(old, new), "RNN511") == []


def test_rnn511_window_arrays_silent_through_instance_and_helpers():
    permuted = LAYER_THROUGH_INSTANCE.replace("model.lstm(X_t)", "model.lstm(X_t.permute(1, 0, 2))")
    rebound = LAYER_THROUGH_INSTANCE.replace("model = Model()", "model = Model()\nmodel = load_model()")
    flat_windows = CREATE_DATASET.replace("fit_transform(df[[\"Close\"]])", "fit_transform(df[[\"Close\"]]).ravel()")
    time_major = BROWNLEE_RESHAPE.replace("(trainX.shape[0], 1, trainX.shape[1])", "(1, trainX.shape[0], trainX.shape[1])")
    extended = CREATE_DATASET.replace("        ys.append(data[i + look_back])", "        ys.append(data[i + look_back])\n    xs.extend(extra)")
    for source in (permuted, rebound, flat_windows, time_major, extended):
        assert source.count("\n") >= 10
        assert lines(source, "RNN511") == [], source


# -- RNN514 bidirectional-state-indexing ---------------------------------------------------

H_N_LAST_ONLY = '''
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 64, batch_first=True, bidirectional=True)
        self.head = nn.Linear(64, 1)

    def forward(self, x):
        _, (h_n, _) = self.lstm(x)
        return self.head(h_n[-1])
'''

H_N_LAYER_ZERO = '''
import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(100, 128, num_layers=2, batch_first=True, bidirectional=True)
        self.head = nn.Linear(256, 6)

    def forward(self, x):
        _, h_n = self.gru(x)
        return self.head(torch.cat([h_n[0], h_n[1]], dim=1))
'''

STATE_TUPLE_INDEX = '''
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(6, 64, num_layers=3, bidirectional=True)
        self.head = nn.Linear(128, 1)

    def forward(self, x):
        out, hidden = self.lstm(x)
        top = hidden[0][-2:]
        first = hidden[0][:2]
        return self.head(first.transpose(0, 1).reshape(x.size(1), -1))
'''


@pytest.mark.parametrize(
    "source,line",
    [(H_N_LAST_ONLY, 13), (H_N_LAYER_ZERO, 14), (H_N_LAYER_ZERO.replace("h_n[0], h_n[1]", "h_n[0]"), 14)],
    ids=["h_n[-1]", "layer-0-pair", "single-forward"],
)
def test_rnn514_fires(source, line):
    assert lines(source, "RNN514") == [line]


def test_rnn514_slice_of_wrong_layer():
    # h_n[-2:] (the top layer) together with h_n[:2] (layer 0): the top layer is covered.
    assert lines(STATE_TUPLE_INDEX, "RNN514") == []
    only_first = STATE_TUPLE_INDEX.replace("        top = hidden[0][-2:]\n", "")
    assert lines(only_first, "RNN514") == [13]


def test_rnn514_silent_on_correct_indexing_and_unidirectional():
    source = '''
    import torch
    import torch.nn as nn


    class Model(nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.bi = nn.LSTM(6, 64, num_layers=layers, batch_first=True, bidirectional=True)
            self.uni = nn.GRU(6, 64, num_layers=2, batch_first=True)

        def forward(self, x):
            out, (h_n, _) = self.bi(x)
            forward_last, backward_last = h_n[-2], h_n[-1]
            summary = torch.cat((forward_last, backward_last), dim=1)
            top = h_n[-2:]
            mixed = torch.cat([out[:, -1, :64], h_n[-1]], dim=1)
            _, h_u = self.uni(x)
            return summary, top, mixed, h_u[-1]


    model = Model(layers=2)
    '''
    assert lines(source, "RNN514") == []
