"""RNN302-RNN306: scalers fit on evaluation data or before the split, shuffled splits of
windowed series, padding without packing, and the test split used for validation.

Each firing case checks the exact code and line; each near-miss must stay silent for that code."""

from __future__ import annotations

from lintutil import lint

TORCH_MODEL = '''
import numpy as np
import pandas as pd
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 32, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


model = Net()
'''
# TORCH_MODEL is 19 lines long (the leading newline included): snippets appended to it start at line 20.
TORCH_BASE = TORCH_MODEL.count("\n")

KERAS_HEAD = '''
import numpy as np
import pandas as pd
import keras
from keras.layers import LSTM, Dense, Input
'''
KERAS_BASE = KERAS_HEAD.count("\n")
# A recurrent keras model for snippets that only prepare data (appended after the snippet).
MODEL_LINE = "model = keras.Sequential([Input(shape=(30, 3)), LSTM(16), Dense(1)])\n"


def hits(source: str, code: str):
    return [f.line for f in lint(source) if f.code == code]


def torch_lines(snippet: str, code: str):
    """Lines (relative to the snippet's first line = 1) of `code` findings in TORCH_MODEL + snippet."""
    return [line - TORCH_BASE for line in hits(TORCH_MODEL + snippet, code)]


def keras_lines(snippet: str, code: str):
    return [line - KERAS_BASE for line in hits(KERAS_HEAD + snippet, code)]


# -- RNN302 scaler-fit-on-eval-data ---------------------------------------------------------------


def test_rnn302_fit_transform_on_tail_slice_of_split():
    snippet = '''from sklearn.preprocessing import StandardScaler
values = pd.read_csv("s.csv").to_numpy()
n_train = int(0.8 * len(values))
train_values, test_values = values[:n_train], values[n_train:]
scaler = StandardScaler()
train_values = scaler.fit_transform(train_values)
test_values = scaler.fit_transform(test_values)
x = torch.tensor(train_values)
'''
    assert torch_lines(snippet, "RNN302") == [7]


def test_rnn302_second_part_of_train_test_split_and_message():
    snippet = '''from sklearn.model_selection import train_test_split
from sklearn.preprocessing import MinMaxScaler
X, y = np.load("x.npy"), np.load("y.npy")
a, b, c, d = train_test_split(X, y, shuffle=False)
sc = MinMaxScaler()
a = sc.fit_transform(a)
b = sc.fit_transform(b)
'''
    findings = [f for f in lint(TORCH_MODEL + snippet) if f.code == "RNN302"]
    assert [f.line - TORCH_BASE for f in findings] == [7]
    assert "sc.fit_transform(b)" in findings[0].message


def test_rnn302_keras_adapt_and_named_validation_split():
    snippet = '''from keras.layers import Normalization
x_train, x_val = np.load("a.npy"), np.load("b.npy")
norm = Normalization()
norm.adapt(x_val)
model = keras.Sequential([Input(shape=(10, 3)), norm, LSTM(8), Dense(1)])
'''
    assert keras_lines(snippet, "RNN302") == [4]


def test_rnn302_manual_statistics_of_test_data():
    snippet = '''X_train, X_test = np.load("tr.npy"), np.load("te.npy")
X_train = (X_train - X_train.mean(axis=0)) / X_train.std(axis=0)
X_test = (X_test - X_test.mean(axis=0)) / X_test.std(axis=0)
'''
    assert torch_lines(snippet, "RNN302") == [3]


def test_rnn302_helper_that_fits_on_its_argument():
    snippet = '''from sklearn.preprocessing import MinMaxScaler
train_df, test_df = pd.read_csv("train.csv"), pd.read_csv("test.csv")


def normalise(frame):
    scaler = MinMaxScaler()
    return scaler.fit_transform(frame)


train = normalise(train_df)
test = normalise(test_df)
'''
    assert torch_lines(snippet, "RNN302") == [11]


def test_rnn302_near_misses_are_silent():
    snippet = '''from sklearn.preprocessing import StandardScaler
X_train, X_test = np.load("tr.npy"), np.load("te.npy")
scaler = StandardScaler().fit(X_train)
X_train = scaler.transform(X_train)
X_test = scaler.transform(X_test)
# per-sample normalisation is not a fit on the test set
X_test = (X_test - X_test.mean(axis=1, keepdims=True)) / X_test.std(axis=1, keepdims=True)
# a statistic inside a score is not a scaling
r2 = 1 - ((X_test - X_train) ** 2).sum() / ((X_test - X_test.mean()) ** 2).sum()
# "test" in a name with no training counterpart and no split: unknown
demo_scaler = StandardScaler()
test_input = demo_scaler.fit_transform(np.random.rand(5, 4))
'''
    assert torch_lines(snippet, "RNN302") == []


def test_rnn302_guarded_helper_is_silent():
    snippet = '''from sklearn.preprocessing import StandardScaler
scaler = StandardScaler()
train_df, test_df = pd.read_csv("train.csv"), pd.read_csv("test.csv")


def prepare(frame, fit=False):
    if fit:
        scaler.fit(frame)
    return scaler.transform(frame)


train = prepare(train_df, fit=True)
test = prepare(test_df)
'''
    assert torch_lines(snippet, "RNN302") == []


# -- RNN303 scaler-fit-before-split -----------------------------------------------------------------


def test_rnn303_fit_on_all_then_head_slice():
    snippet = '''import math
from sklearn.preprocessing import MinMaxScaler
dataset = pd.read_csv("close.csv").filter(["Close"]).values
training_data_len = math.ceil(len(dataset) * 0.8)
scaler = MinMaxScaler(feature_range=(0, 1))
scaled_data = scaler.fit_transform(dataset)
train_data = scaled_data[0:training_data_len, :]
test_data = scaled_data[training_data_len - 60:, :]
'''
    findings = [f for f in lint(TORCH_MODEL + snippet) if f.code == "RNN303"]
    assert [f.line - TORCH_BASE for f in findings] == [6]
    assert f"line {TORCH_BASE + 7}" in findings[0].message


def test_rnn303_fit_then_train_test_split_through_windows():
    snippet = '''from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler


def windows(series, width):
    xs, ys = [], []
    for i in range(len(series) - width):
        xs.append(series[i:i + width])
        ys.append(series[i + width])
    return np.array(xs), np.array(ys)


values = StandardScaler().fit_transform(pd.read_csv("load.csv").to_numpy())
X, y = windows(values, 24)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, shuffle=False)
'''
    assert torch_lines(snippet, "RNN303") == [13]


def test_rnn303_in_place_columns_and_manual_standardisation():
    snippet = '''from sklearn.preprocessing import MinMaxScaler
df = pd.read_csv("energy.csv")
cols = ["load", "temp"]
df[cols] = MinMaxScaler().fit_transform(df[cols])
split = int(len(df) * 0.8)
train_df, test_df = df[:split], df[split:]
raw = pd.read_csv("other.csv")
raw = (raw - raw.mean()) / raw.std()
n_train = 1000
head, tail = raw[:n_train], raw[n_train:]
'''
    assert torch_lines(snippet, "RNN303") == [4, 8]


def test_rnn303_near_misses_are_silent():
    snippet = '''from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
data = pd.read_csv("a.csv").to_numpy()
train_end = int(len(data) * 0.7)
scaler = StandardScaler().fit(data[:train_end])
scaled = scaler.transform(data)
train, test = scaled[:train_end], scaled[train_end:]
# shifting by one step is not a split
x_all, y_all = scaled[:-1], scaled[1:]
# a training file fit, then split into train/validation
train_df = pd.read_csv("train.csv")
test_df = pd.read_csv("test.csv")
feats = StandardScaler().fit_transform(train_df)
tr, va = train_test_split(feats, test_size=0.1)
# fit after the split, on the training part
other = np.load("b.npy")
o_train, o_test = train_test_split(other, test_size=0.2, shuffle=False)
sc2 = StandardScaler()
o_train = sc2.fit_transform(o_train)
'''
    assert torch_lines(snippet, "RNN303") == []


# -- RNN303: windows cut inline (loop append, preallocated array, comprehension) after the fit -------


def test_rnn303_windows_appended_in_a_loop_then_train_test_split():
    snippet = '''from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
series = pd.read_csv("temps.csv")[["anomaly"]].values
series = StandardScaler().fit_transform(series)
X, y = [], []
for i in range(len(series) - 30):
    X.append(series[i:i + 30])
    y.append(series[i + 30])
X, y = np.array(X), np.array(y)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, shuffle=False)
'''
    findings = [f for f in lint(TORCH_MODEL + snippet) if f.code == "RNN303"]
    assert [f.line - TORCH_BASE for f in findings] == [4]
    assert findings[0].message.startswith("StandardScaler().fit_transform(series) sees every row before "
                                          "train_test_split(X, y, test_size=0.2, shuffle=False)")
    assert f"(line {TORCH_BASE + 10})" in findings[0].message


def test_rnn303_windows_in_a_preallocated_array_then_fraction_slice():
    snippet = '''from sklearn.preprocessing import MinMaxScaler
Y = pd.read_csv("temps.csv")[["anomaly"]].values.astype(np.float32)
scaler = MinMaxScaler((-1.0, 1.0))
Ys = scaler.fit_transform(Y)
L = 20
X_ts = np.zeros((len(Ys) - L, L, 1), dtype=np.float32)
Y_ts = np.zeros((len(Ys) - L, 1), dtype=np.float32)
for i in range(len(Ys) - L):
    X_ts[i] = Ys[i:i + L]
    Y_ts[i] = Ys[i + L]
split = int(len(X_ts) * 0.8)
X_train, Y_train = X_ts[:split], Y_ts[:split]
X_test, Y_test = X_ts[split:], Y_ts[split:]
'''
    findings = [f for f in lint(TORCH_MODEL + snippet) if f.code == "RNN303"]
    assert [f.line - TORCH_BASE for f in findings] == [4]
    assert "scaler.fit_transform(Y) sees every row before X_ts[:split]" in findings[0].message


def test_rnn303_windows_from_a_comprehension_then_slice():
    snippet = '''from sklearn.preprocessing import MinMaxScaler
values = pd.read_csv("load.csv")[["load"]].to_numpy()
values = MinMaxScaler().fit_transform(values)
X = np.array([values[i:i + 24] for i in range(len(values) - 24)])
y = np.array([values[i + 24] for i in range(len(values) - 24)])
n_train = int(0.8 * len(X))
x_tr, x_te = X[:n_train], X[n_train:]
'''
    assert torch_lines(snippet, "RNN303") == [3]


def test_rnn303_inline_windows_near_misses_are_silent():
    snippet = '''from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler, MinMaxScaler
# fit on the training part only, windows of the whole scaled series, split afterwards
data = pd.read_csv("a.csv")[["v"]].to_numpy()
train_end = int(len(data) * 0.8)
scaler = StandardScaler().fit(data[:train_end])
scaled = scaler.transform(data)
X = []
for i in range(len(scaled) - 30):
    X.append(scaled[i:i + 30])
X = np.array(X)
X_fit, X_hold = X[:train_end], X[train_end:]
# windows from the training array only (the scaler saw the training rows alone)
raw = np.load("b.npy")
n_tr = int(len(raw) * 0.8)
train_raw, test_raw = raw[:n_tr], raw[n_tr:]
sc = MinMaxScaler()
train_scaled = sc.fit_transform(train_raw)
W = np.zeros((len(train_scaled) - 30, 30, 1))
for i in range(len(train_scaled) - 30):
    W[i] = train_scaled[i:i + 30]
W_tr, W_va = train_test_split(W, test_size=0.1, shuffle=False)
# the scaled name is rebound to raw data before the windows are cut
series = np.load("c.npy")
series = StandardScaler().fit_transform(series)
series = np.load("c_raw.npy")
Z = np.array([series[i:i + 30] for i in range(len(series) - 30)])
cut = int(len(Z) * 0.8)
Z_a, Z_b = Z[:cut], Z[cut:]
# a scaled array nobody windows; the windows come from another series
prices = MinMaxScaler().fit_transform(np.load("d.npy"))
other = np.load("e.npy")
Q = []
for i in range(len(other) - 30):
    Q.append(other[i:i + 30])
Q = np.array(Q)
q_train, q_test = train_test_split(Q, test_size=0.2, shuffle=False)
'''
    assert torch_lines(snippet, "RNN303") == []


# -- RNN304 shuffled-time-series-split ------------------------------------------------------------


def test_rnn304_comprehension_windows_keras():
    snippet = '''from sklearn.model_selection import train_test_split
WINDOW = 50
series = np.load("s.npy")
x = np.stack([series[i:i + WINDOW] for i in range(len(series) - WINDOW)])[..., None]
y = series[WINDOW:]
x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=42)
model = keras.Sequential([Input(shape=(WINDOW, 1)), LSTM(64), Dense(1)])
'''
    findings = [f for f in lint(KERAS_HEAD + snippet) if f.code == "RNN304"]
    assert [f.line - KERAS_BASE for f in findings] == [6]
    assert "share 49 of 50 steps" in findings[0].message


def test_rnn304_loop_helper_and_explicit_shuffle_true():
    snippet = '''from sklearn.model_selection import train_test_split


def create_sequences(data, seq_length):
    xs, ys = [], []
    for i in range(len(data) - seq_length):
        x = data[i:(i + seq_length)]
        xs.append(x)
        ys.append(data[i + seq_length])
    return np.array(xs), np.array(ys)


X, y = create_sequences(np.load("s.npy"), 30)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, shuffle=True)
'''
    assert torch_lines(snippet, "RNN304") == [14]


def test_rnn304_random_split_of_window_dataset():
    snippet = '''from torch.utils.data import Dataset, random_split


class Windows(Dataset):
    def __init__(self, series, seq_len):
        self.series, self.seq_len = series, seq_len

    def __len__(self):
        return len(self.series) - self.seq_len

    def __getitem__(self, idx):
        return self.series[idx:idx + self.seq_len], self.series[idx + self.seq_len]


dataset = Windows(torch.tensor(np.load("s.npy")), 48)
train_set, test_set = random_split(dataset, [0.8, 0.2])
'''
    assert torch_lines(snippet, "RNN304") == [16]


def test_rnn304_rows_split_then_windowed():
    snippet = '''from sklearn.model_selection import train_test_split
from keras.preprocessing.sequence import TimeseriesGenerator
df = pd.read_csv("d.csv", parse_dates=["date"], index_col="date")
train, test = train_test_split(df, test_size=0.2)
gen = TimeseriesGenerator(train.values, train.values, length=24)
model = keras.Sequential([Input(shape=(24, 3)), LSTM(16), Dense(1)])
'''
    assert keras_lines(snippet, "RNN304") == [4]


def test_rnn304_near_misses_are_silent():
    snippet = '''import argparse
from sklearn.model_selection import train_test_split
parser = argparse.ArgumentParser()
parser.add_argument("--shuffle", action="store_true")
args = parser.parse_args()
W = 20
series = np.load("s.npy")
x = np.stack([series[i:i + W] for i in range(len(series) - W)])
y = series[W:]
a, b, c, d = train_test_split(x, y, test_size=0.2, shuffle=False)
e, f, g, h = train_test_split(x, y, test_size=0.2, shuffle=args.shuffle)
# non-overlapping windows
blocks = []
for i in range(0, len(series) - W, W):
    blocks.append(series[i:i + W])
blocks = np.array(blocks)
k, l = train_test_split(blocks, test_size=0.2)
# independent samples (no windows)
feats, labels = np.load("f.npy"), np.load("l.npy")
m, n, o, p = train_test_split(feats, labels, test_size=0.2)
'''
    assert torch_lines(snippet, "RNN304") == []


# -- RNN305 padding-without-packing -----------------------------------------------------------------

TORCH_PADDED = '''
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence


def collate(batch):
    seqs, labels = zip(*batch)
    return pad_sequence(seqs, batch_first=True), torch.tensor(labels)


class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(1000, 32, padding_idx=0)
        self.gru = nn.GRU(32, 64, batch_first=True)
        self.head = nn.Linear(64, 2)

    def forward(self, tokens):
        {body}
'''


def test_rnn305_torch_last_step_and_h_n():
    last = TORCH_PADDED.format(body="out, _ = self.gru(self.embed(tokens))\n        return self.head(out[:, -1, :])")
    findings = [f for f in lint(last) if f.code == "RNN305"]
    assert [f.line for f in findings] == [20]
    assert "out[:, -1, :]" in findings[0].message and "line 9" in findings[0].message
    state = TORCH_PADDED.format(body="_, h_n = self.gru(self.embed(tokens))\n        return self.head(h_n[-1])")
    assert hits(state, "RNN305") == [20]


def test_rnn305_torch_near_misses():
    packed = TORCH_PADDED.replace(
        "from torch.nn.utils.rnn import pad_sequence",
        "from torch.nn.utils.rnn import pack_padded_sequence, pad_sequence",
    ).format(body="_, h_n = self.gru(pack_padded_sequence(self.embed(tokens), [3], batch_first=True))\n"
                  "        return self.head(h_n[-1])")
    assert hits(packed, "RNN305") == []
    gathered = TORCH_PADDED.format(
        body="out, _ = self.gru(self.embed(tokens))\n"
             "        return self.head(out[torch.arange(out.size(0)), self.lengths - 1])"
    )
    assert hits(gathered, "RNN305") == []
    left = TORCH_PADDED.replace("batch_first=True), torch", "batch_first=True, padding_side=\"left\"), torch").format(
        body="out, _ = self.gru(self.embed(tokens))\n        return self.head(out[:, -1])"
    )
    assert hits(left, "RNN305") == []


DECODER_STEP = '''
import torch
import torch.nn as nn
from torch.nn.utils.rnn import pad_sequence


def collate(batch):
    src, trg = zip(*batch)
    return pad_sequence(src, batch_first=True), pad_sequence(trg, batch_first=True)


class Decoder(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.embed = nn.Embedding(vocab, 32, padding_idx=0)
        self.gru = nn.GRU(32 + hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, token, hidden, context):
        embedded = self.embed(token).unsqueeze({axis})
        output, h_n = self.gru(torch.cat((embedded, context), dim={dim}), hidden)
        return self.out(output.squeeze(1)), h_n
'''


def test_rnn305_decoder_fed_one_step_at_a_time_is_silent():
    # One token per call: no padded step inside the call; the padding is the loss's business.
    assert hits(DECODER_STEP.format(axis=1, dim=2), "RNN305") == []
    assert hits(DECODER_STEP.format(axis=1, dim=-1), "RNN305") == []
    # Concatenated along time, or unsqueezed on another axis: the length is not known to be 1.
    assert hits(DECODER_STEP.format(axis=1, dim=1), "RNN305") == [21]
    assert hits(DECODER_STEP.format(axis=2, dim=2), "RNN305") == [21]


KERAS_PADDED = '''
import numpy as np
import keras
from keras.layers import LSTM, Dense, Embedding, GlobalMaxPooling1D
from keras.utils import pad_sequences

x = pad_sequences(np.load("seqs.npy", allow_pickle=True), maxlen=200{pad})
model = keras.Sequential([
    Embedding(5000, 32{mask}),
    LSTM(32{seq}),
    {tail}
    Dense(1, activation="sigmoid"),
])
'''


def test_rnn305_keras_post_padding_without_mask():
    source = KERAS_PADDED.format(pad=', padding="post"', mask="", seq="", tail="")
    findings = [f for f in lint(source) if f.code == "RNN305"]
    assert [f.line for f in findings] == [10]
    assert "line 7" in findings[0].message


def test_rnn305_keras_near_misses():
    assert hits(KERAS_PADDED.format(pad=', padding="post"', mask=", mask_zero=True", seq="", tail=""), "RNN305") == []
    assert hits(KERAS_PADDED.format(pad="", mask="", seq="", tail=""), "RNN305") == []  # "pre" is the default
    pooled = KERAS_PADDED.format(pad=', padding="post"', mask="", seq=", return_sequences=True",
                                 tail="GlobalMaxPooling1D(),")
    assert hits(pooled, "RNN305") == []


# -- RNN306 test-set-as-validation ------------------------------------------------------------------


def test_rnn306_keras_early_stopping_and_checkpoint():
    snippet = '''from keras.callbacks import EarlyStopping, ModelCheckpoint
X_train, y_train = np.load("a.npy"), np.load("b.npy")
X_test, y_test = np.load("c.npy"), np.load("d.npy")
model = keras.Sequential([Input(shape=(30, 4)), LSTM(16), Dense(1)])
model.compile(optimizer="adam", loss="mse")
stop = EarlyStopping(patience=5)
model.fit(X_train, y_train, epochs=50, validation_data=(X_test, y_test), callbacks=[stop])
best = ModelCheckpoint("best.keras", monitor="val_loss", save_best_only=True)
callbacks = [best]
model.fit(X_train, y_train, epochs=50,
          validation_data=(X_test, y_test), callbacks=callbacks)
'''
    findings = [f for f in lint(KERAS_HEAD + snippet) if f.code == "RNN306"]
    assert [f.line - KERAS_BASE for f in findings] == [7, 11]
    assert "EarlyStopping(monitor='val_loss')" in findings[0].message


def test_rnn306_keras_near_misses():
    snippet = '''from keras.callbacks import EarlyStopping, ModelCheckpoint
X_train, y_train = np.load("a.npy"), np.load("b.npy")
X_val, y_val = np.load("e.npy"), np.load("f.npy")
X_test, y_test = np.load("c.npy"), np.load("d.npy")
model = keras.Sequential([Input(shape=(30, 4)), LSTM(16), Dense(1)])
model.compile(optimizer="adam", loss="mse")
model.fit(X_train, y_train, validation_data=(X_val, y_val), callbacks=[EarlyStopping(patience=5)])
model.fit(X_train, y_train, validation_data=(X_test, y_test))
model.fit(X_train, y_train, validation_data=(X_test, y_test), callbacks=[ModelCheckpoint("m.keras")])
model.fit(X_train, y_train, validation_data=(X_test, y_test), callbacks=[EarlyStopping(monitor="loss")])
model.evaluate(X_test, y_test)
'''
    assert keras_lines(snippet, "RNN306") == []


# -- RNN306: keras window generators built on the test split --------------------------------------

GENERATOR_HEAD = '''from sklearn.preprocessing import MinMaxScaler
from keras.callbacks import EarlyStopping, ModelCheckpoint
from keras.preprocessing.sequence import TimeseriesGenerator
df = pd.read_csv("sales.csv", index_col="date")
train, test = df.iloc[:-24], df.iloc[-24:]
scaler = MinMaxScaler()
scaled_train = scaler.fit_transform(train)
scaled_test = scaler.transform(test)
model = keras.Sequential([Input(shape=(12, 1)), LSTM(50), Dense(1)])
model.compile(optimizer="adam", loss="mse")
gen = TimeseriesGenerator(scaled_train, scaled_train, length=12, batch_size=1)
'''


def test_rnn306_timeseries_generator_on_the_test_split():
    snippet = GENERATOR_HEAD + '''val_gen = TimeseriesGenerator(scaled_test, scaled_test, length=12, batch_size=1)
model.fit(gen, epochs=20, validation_data=val_gen, callbacks=[EarlyStopping(monitor="val_loss", patience=2)])
'''
    findings = [f for f in lint(KERAS_HEAD + snippet) if f.code == "RNN306"]
    assert [f.line - KERAS_BASE for f in findings] == [13]
    assert findings[0].message.startswith(
        "validation_data=val_gen drives EarlyStopping(monitor='val_loss') (line " + str(KERAS_BASE + 13) + ")")
    # Keras 2's fit_generator trains the same way.
    legacy = snippet.replace("model.fit(gen,", "model.fit_generator(gen,")
    assert [f.line - KERAS_BASE for f in lint(KERAS_HEAD + legacy) if f.code == "RNN306"] == [13]


def test_rnn306_timeseries_dataset_from_array_on_the_test_split():
    snippet = GENERATOR_HEAD + '''check_ds = keras.utils.timeseries_dataset_from_array(
    scaled_test[:-12], scaled_test[12:], sequence_length=12, batch_size=32)
best = ModelCheckpoint("best.keras", monitor="val_loss", save_best_only=True)
model.fit(gen, epochs=20, validation_data=check_ds, callbacks=[best])
'''
    findings = [f for f in lint(KERAS_HEAD + snippet) if f.code == "RNN306"]
    assert [f.line - KERAS_BASE for f in findings] == [15]
    assert "validation_data=check_ds drives ModelCheckpoint(monitor='val_loss')" in findings[0].message


def test_rnn306_window_generators_near_misses_are_silent():
    snippet = GENERATOR_HEAD + '''x_train, x_val = scaled_train[:-24], scaled_train[-24:]
val_gen = TimeseriesGenerator(x_val, x_val, length=12, batch_size=1)
model.fit(gen, epochs=20, validation_data=val_gen, callbacks=[EarlyStopping(monitor="val_loss", patience=2)])
again = TimeseriesGenerator(scaled_train, scaled_train, length=12, batch_size=1)
model.fit(gen, epochs=20, validation_data=again, callbacks=[EarlyStopping(monitor="val_loss", patience=2)])
val_ds = keras.utils.timeseries_dataset_from_array(x_val[:-12], x_val[12:], sequence_length=12)
model.fit(gen, epochs=20, validation_data=val_ds, callbacks=[EarlyStopping(monitor="val_loss")])
test_gen = TimeseriesGenerator(scaled_test, scaled_test, length=12, batch_size=1)
model.fit(gen, epochs=20, validation_data=test_gen)
model.evaluate(test_gen)
'''
    assert keras_lines(snippet, "RNN306") == []


TORCH_LOOP = '''
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(4, 16, batch_first=True)
        self.head = nn.Linear(16, 1)

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.head(out[:, -1])


def evaluate(model, loader):
    model.eval()
    with torch.no_grad():
        return sum(nn.functional.mse_loss(model(x), y).item() for x, y in loader) / len(loader)


x, y = torch.randn(1000, 20, 4), torch.randn(1000, 1)
train_loader = DataLoader(TensorDataset(x[:800], y[:800]), batch_size=32, shuffle=True)
{eval_name}_loader = DataLoader(TensorDataset(x[800:], y[800:]), batch_size=32)
model = Net()
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=5, min_lr=1e-5)
best_loss = float("inf")
for epoch in range(50):
    model.train()
    for xb, yb in train_loader:
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(xb), yb)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    {tail}
'''


def test_rnn306_torch_scheduler_and_best_checkpoint():
    tail = '''score = evaluate(model, test_loader)
    scheduler.step(score)
    if score < best_loss:
        best_loss = score
        torch.save(model.state_dict(), "best.pt")'''
    source = TORCH_LOOP.format(eval_name="test", tail=tail)
    findings = [f for f in lint(source) if f.code == "RNN306"]
    assert [f.line for f in findings] == [40, 41]
    assert "ReduceLROnPlateau" in findings[0].message and "best epoch" in findings[1].message


def test_rnn306_torch_loop_over_test_loader_drives_early_stopping():
    tail = '''model.eval()
    test_loss = 0.0
    with torch.no_grad():
        for xb, yb in test_loader:
            test_loss += nn.functional.mse_loss(model(xb), yb).item()
    early_stopping(test_loss, model)'''
    source = TORCH_LOOP.format(eval_name="test", tail=tail).replace(
        "best_loss = float", "early_stopping = lambda *a: None\nbest_loss = float"
    )
    assert hits(source, "RNN306") == [45]


def test_rnn306_torch_near_misses():
    tail = '''score = evaluate(model, val_loader)
    scheduler.step(score)
    if score < best_loss:
        best_loss = score'''
    assert hits(TORCH_LOOP.format(eval_name="val", tail=tail), "RNN306") == []
    # the test set evaluated each epoch for a printout only, and once at the end
    tail = '''print(epoch, evaluate(model, test_loader))
    test_loss = evaluate(model, test_loader)
    print(test_loss)
print("final", evaluate(model, test_loader))'''
    assert hits(TORCH_LOOP.format(eval_name="test", tail=tail), "RNN306") == []


# --- RNN301 precision: bookkeeping names, statistics kept in a mapping, prepared files ---

def test_rnn301_split_index_from_len_is_not_data():
    from lintutil import lint
    src = '''
import numpy as np
import torch
import torch.nn as nn
series = np.load("hourly.npy")
split = int(len(series) * 0.8)
scaled = series[:split] / 1.0
model = nn.GRU(4, 64, batch_first=True)
out, _ = model(torch.from_numpy(scaled).float())
'''
    assert [f.code for f in lint(src)] == []


def test_rnn301_statistics_read_from_a_mapping_count_as_scaling():
    from lintutil import lint
    src = '''
import numpy as np
import torch
import torch.nn as nn
series = np.load("hourly.npz")
x_train = (series["x_train"] - series["mean"]) / series["std"]
model = nn.LSTM(4, 32, batch_first=True)
out, _ = model(torch.tensor(x_train, dtype=torch.float32))
'''
    assert [f.code for f in lint(src)] == []


def test_rnn301_a_file_named_as_prepared_is_trusted_but_raw_still_fires():
    from lintutil import lint
    src = '''
import numpy as np
import torch
import torch.nn as nn
series = np.load("{name}")
model = nn.GRU(4, 64, batch_first=True)
out, _ = model(torch.from_numpy(series).float())
'''
    assert [f.code for f in lint(src.replace("{name}", "hourly_scaled.npy"))] == []
    assert [(f.code, f.line) for f in lint(src.replace("{name}", "hourly.npy"))] == [("RNN301", 7)]
    # An array file named after a ready-made split was written by a preparation step not shown here.
    for prepared in ("X_train.npy", "data/x_test.npz", "train_x.npy", "yval.npy"):
        assert [f.code for f in lint(src.replace("{name}", prepared))] == [], prepared
    # Array files not named as a bare split (raw series, windows, a split marked raw) stay sources.
    for raw in ("training_series.npy", "windows.npy", "X_train_raw.npy"):
        assert [(f.code, f.line) for f in lint(src.replace("{name}", raw))] == [("RNN301", 7)], raw


def test_rnn301_labels_are_not_features():
    from lintutil import lint
    src = '''
import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import TensorDataset
npz = np.load("gestures.npz")
x = (npz["train_x"] - npz["train_x"].mean()) / npz["train_x"].std()
ds = TensorDataset(torch.from_numpy(x).float(), torch.from_numpy(npz["train_y"]).long())
targets = torch.tensor(npz["y_val"], dtype=torch.float32)
also = TensorDataset(torch.tensor(x), torch.tensor(np.load("targets.npy"), dtype=torch.float32))
model = nn.GRU(6, 32, batch_first=True)
'''
    assert [f.code for f in lint(src)] == []


def test_rnn301_a_normalisation_layer_in_the_model_counts_as_scaling():
    from lintutil import lint
    src = '''
import numpy as np
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.{layer}(13)
        self.rnn = nn.GRU(13, 64, batch_first=True)

    def forward(self, x):
        out, _ = self.rnn(self.norm(x))
        return out


frames = np.load("mfcc.npy")
model = Net()
out = model(torch.from_numpy(frames).float())
'''
    assert [f.code for f in lint(src.replace("{layer}", "LayerNorm"))] == []
    assert [f.code for f in lint(src.replace("{layer}", "Identity"))] == ["RNN301"]


# -- RNN303: statistics written into columns of the whole frame before the split ---------------------


def test_rnn303_column_standardisation_with_unpacked_statistics():
    snippet = '''df = pd.read_csv("household_power.csv", parse_dates=["ts"])
FEATURES = ["Global_active_power", "Voltage", "Global_intensity"]
mean, std = df[FEATURES].mean(), df[FEATURES].std()
df[FEATURES] = (df[FEATURES] - mean) / std
split = int(len(df) * 0.8)
train_df, test_df = df[:split], df[split:]
'''
    findings = [f for f in lint(KERAS_HEAD + snippet + MODEL_LINE) if f.code == "RNN303"]
    assert [f.line - KERAS_BASE for f in findings] == [4]
    assert "(df[FEATURES] - mean) / std" in findings[0].message
    assert f"line {KERAS_BASE + 6}" in findings[0].message


def test_rnn303_column_min_max_inline_and_in_a_loop():
    snippet = '''from sklearn.model_selection import train_test_split
df = pd.read_csv("sensors.csv")
cols = ["temp", "pressure"]
df[cols] = (df[cols] - df[cols].min()) / (df[cols].max() - df[cols].min())
n_train = int(0.7 * len(df))
train, test = df.iloc[:n_train], df.iloc[n_train:]
raw = pd.read_csv("load.csv")
for c in ["load", "temp"]:
    raw[c] = (raw[c] - raw[c].mean()) / raw[c].std()
X_train, X_test = train_test_split(raw.to_numpy(), shuffle=False)
'''
    assert keras_lines(snippet + MODEL_LINE, "RNN303") == [4, 9]


def test_rnn303_column_scaling_near_misses_are_silent():
    snippet = '''df = pd.read_csv("household_power.csv")
FEATURES = ["Global_active_power", "Voltage"]
split = int(len(df) * 0.8)
train_df, test_df = df[:split].copy(), df[split:].copy()
# statistics of the training slice only
mean, std = train_df[FEATURES].mean(), train_df[FEATURES].std()
train_df[FEATURES] = (train_df[FEATURES] - mean) / std
test_df[FEATURES] = (test_df[FEATURES] - mean) / std
# statistics of the head of the split, written into the whole frame, then split again
lo, hi = df[:split][FEATURES].min(), df[:split][FEATURES].max()
df[FEATURES] = (df[FEATURES] - lo) / (hi - lo)
head, tail = df[:split], df[split:]
# per-row normalisation and a ratio of two columns are not statistics of the rows
other = pd.read_csv("other.csv")
other[FEATURES] = other[FEATURES].div(other[FEATURES].max(axis=1), axis=0)
other["rel"] = other["a"] / other[FEATURES].max(axis=1)
other["ratio"] = other["a"] / other["b"]
o_train, o_test = other[:split], other[split:]
'''
    assert keras_lines(snippet + MODEL_LINE, "RNN303") == []
    assert keras_lines(snippet + MODEL_LINE, "RNN302") == []


def test_rnn302_column_statistics_of_the_test_frame():
    snippet = '''train_df, test_df = pd.read_csv("train.csv"), pd.read_csv("test.csv")
cols = ["a", "b"]
train_df[cols] = (train_df[cols] - train_df[cols].mean()) / train_df[cols].std()
test_df[cols] = (test_df[cols] - test_df[cols].mean()) / test_df[cols].std()
'''
    assert keras_lines(snippet + MODEL_LINE, "RNN302") == [4]


# -- RNN306: callbacks built in a helper, a module-level list, or appended to a list ---------------


def test_rnn306_callbacks_from_a_helper_function_and_an_appended_list():
    snippet = '''from keras.callbacks import EarlyStopping, ReduceLROnPlateau, TensorBoard
x_train, y_train = np.load("a.npy"), np.load("b.npy")
x_test, y_test = np.load("c.npy"), np.load("d.npy")


def make_callbacks():
    return [EarlyStopping(monitor="val_loss", patience=5), ReduceLROnPlateau(factor=0.5, patience=2)]


def get_callbacks():
    stopper = EarlyStopping(monitor="val_loss", patience=8, restore_best_weights=True)
    return [TensorBoard("logs"), stopper]


model = keras.Sequential([Input(shape=(30, 4)), LSTM(16), Dense(1)])
model.compile(optimizer="adam", loss="mse")
model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=make_callbacks())
cbs = get_callbacks()
model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=cbs)
more = [TensorBoard("logs")]
more.append(ReduceLROnPlateau(patience=2))
model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=more)
'''
    findings = [f for f in lint(KERAS_HEAD + snippet) if f.code == "RNN306"]
    assert [f.line - KERAS_BASE for f in findings] == [17, 19, 22]
    assert f"(line {KERAS_BASE + 7})" in findings[0].message
    assert "EarlyStopping(monitor='val_loss')" in findings[1].message
    assert "ReduceLROnPlateau(monitor='val_loss')" in findings[2].message


def test_rnn306_module_level_callbacks_used_inside_a_function():
    snippet = '''from keras.callbacks import EarlyStopping
x_train, y_train = np.load("a.npy"), np.load("b.npy")
x_test, y_test = np.load("c.npy"), np.load("d.npy")
CALLBACKS = [EarlyStopping(patience=3)]


def train(model):
    model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=CALLBACKS)


model = keras.Sequential([Input(shape=(30, 4)), LSTM(16), Dense(1)])
train(model)
'''
    assert keras_lines(snippet, "RNN306") == [8]


def test_rnn306_callback_helpers_near_misses_are_silent():
    snippet = '''from keras.callbacks import EarlyStopping, ModelCheckpoint, TensorBoard
x_train, y_train = np.load("a.npy"), np.load("b.npy")
x_test, y_test = np.load("c.npy"), np.load("d.npy")
callbacks = [EarlyStopping(patience=3)]


def logging_callbacks():
    return [TensorBoard("logs"), ModelCheckpoint("last.keras")]


def watch(monitor):
    return [EarlyStopping(monitor=monitor)]


def optional_callbacks(use_es):
    if use_es:
        return [EarlyStopping(patience=5)]
    return [TensorBoard("logs")]


def train(model, callbacks):
    model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=callbacks)


model = keras.Sequential([Input(shape=(30, 4)), LSTM(16), Dense(1)])
model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=logging_callbacks())
model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=watch("loss"))
model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=optional_callbacks(False))
cbs = [TensorBoard("logs")]
if len(x_train) > 1000:
    cbs.append(EarlyStopping(patience=5))
model.fit(x_train, y_train, validation_data=(x_test, y_test), callbacks=cbs)
x_val, y_val = np.load("e.npy"), np.load("f.npy")
model.fit(x_train, y_train, validation_data=(x_val, y_val), callbacks=callbacks)
'''
    assert keras_lines(snippet, "RNN306") == []


# -- RNN301: scaling of the target alone does not hide unscaled features -----------------------------

RNN301_PIPELINE = '''
import numpy as np
import pandas as pd
import keras
from keras.layers import LSTM, Dense, Input
from sklearn.preprocessing import MinMaxScaler, StandardScaler

FEATURES = ["load", "temp", "humidity"]
WINDOW = 24


def main():
    df = pd.read_csv("power.csv")
    split = int(len(df) * 0.8)
    scaler = StandardScaler().fit(df[FEATURES][:split])

    def prepare(frame):
        values = frame[FEATURES].to_numpy()
        return {features}

    X = np.stack([w for w in prepare(df)])
{target}
    model = keras.Sequential([Input(shape=(WINDOW, 3)), LSTM(32), Dense(1)])
    model.compile(optimizer="adam", loss="mse")
    model.fit(X, y, epochs=10)
{after}

main()
'''
_SCALED_TARGETS = {
    "scaler": '''    y_scaler = MinMaxScaler()
    y = y_scaler.fit_transform(df[["load"]].to_numpy())[WINDOW:]''',
    "division": '''    y = df["load"].to_numpy()[WINDOW:] / 1000.0''',
}


def _pipeline(features: str, target: str, after: str = "") -> str:
    return RNN301_PIPELINE.replace("{features}", features).replace(
        "{target}", _SCALED_TARGETS[target]).replace("{after}", after)


def test_rnn301_features_unscaled_while_only_the_target_is_scaled():
    after = "    pred = y_scaler.inverse_transform(model.predict(X))\n"
    findings = [f for f in lint(_pipeline("values", "scaler", after)) if f.code == "RNN301"]
    assert [f.line for f in findings] == [26]
    assert findings[0].message.startswith("X comes from pd.read_csv() (line 13)")
    assert [(f.code, f.line) for f in lint(_pipeline("values", "division")) if f.code == "RNN301"] == [("RNN301", 25)]


def test_rnn301_features_scaled_in_the_nested_helper_are_silent():
    for target in _SCALED_TARGETS:
        assert [f.code for f in lint(_pipeline("scaler.transform(values)", target)) if f.code == "RNN301"] == []


def test_rnn301_target_scaler_near_misses_are_silent():
    # The target scaler is handed to a helper (it may scale anything there).
    handed = _pipeline("values", "scaler", "    save(y_scaler)\n")
    # The "y" scaler also scales the features written back into the frame.
    in_place = _pipeline("values", "scaler").replace(
        "    X = np.stack", '    df[FEATURES] = y_scaler.fit_transform(df[FEATURES])\n    X = np.stack')
    # The features are scaled in place by arithmetic on frame columns.
    columns = _pipeline("values", "division").replace(
        "    X = np.stack", "    df[FEATURES] = df[FEATURES] / df[FEATURES].max()\n    X = np.stack")
    for source in (handed, in_place, columns):
        assert [f.code for f in lint(source) if f.code == "RNN301"] == []
    # A univariate series named y is the feature: its scaled copy is not target-named.
    univariate = '''
import numpy as np
import pandas as pd
import keras
from keras.layers import LSTM, Dense, Input
from sklearn.preprocessing import MinMaxScaler
y = pd.read_csv("close.csv")["Close"].to_numpy().reshape(-1, 1)
y_scaler = MinMaxScaler()
series = y_scaler.fit_transform(y)
X = np.stack([series[i:i + 30] for i in range(len(series) - 30)])
model = keras.Sequential([Input(shape=(30, 1)), LSTM(16), Dense(1)])
model.fit(X, series[30:], epochs=5)
'''
    assert [f.code for f in lint(univariate) if f.code == "RNN301"] == []
