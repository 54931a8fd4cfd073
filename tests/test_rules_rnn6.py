"""RNN601-RNN606: architecture and initialisation. Exact code and line for each firing case;
near-misses that must stay silent."""

from __future__ import annotations

from lintutil import ROOT, lint

from rnnlint.config import Config


def found(source: str, prefix: str = "RNN6", config=None):
    kwargs = {"config": config} if config is not None else {}
    return [(f.code, f.line) for f in lint(source, **kwargs) if f.code.startswith(prefix)]


def message(source: str, code: str) -> str:
    messages = [f.message for f in lint(source) if f.code == code]
    assert len(messages) == 1, messages
    return messages[0]


TORCH_RNN_VIEW = '''
import torch
import torch.nn as nn

class PixelRNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.{kind}(1, 128, batch_first={bf})
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        out, _ = self.rnn(x.view(-1, {steps}, 1))
        return self.head(out[:, -1])
'''


# -- RNN601 vanilla-rnn-long-sequence ------------------------------------------------------------


def test_601_torch_view_length_at_the_call():
    source = TORCH_RNN_VIEW.format(kind="RNN", bf="True", steps=784)
    assert found(source) == [("RNN601", 8)]
    text = message(source, "RNN601")
    assert "784 steps" in text and "line 12" in text and "limit: 100" in text


def test_601_near_misses_lstm_short_and_time_major():
    assert found(TORCH_RNN_VIEW.format(kind="LSTM", bf="True", steps=784)) == []
    assert found(TORCH_RNN_VIEW.format(kind="RNN", bf="True", steps=28)) == []
    # time-major: view(-1, 784, 1) puts 784 on the batch axis
    assert found(TORCH_RNN_VIEW.format(kind="RNN", bf="False", steps=784)) == []


def test_601_torch_named_window_constant_used_to_cut():
    source = '''
    import argparse
    import torch
    import torch.nn as nn
    parser = argparse.ArgumentParser()
    parser.add_argument("--seq-len", type=int, default=300)
    args = parser.parse_args()
    series = torch.randn(10000)
    windows = torch.stack([series[i:i + args.seq_len] for i in range(0, 9000, 10)])
    rnn = nn.RNN(1, 32, batch_first=True)
    '''
    assert found(source) == [("RNN601", 10)]
    assert "300 steps" in message(source, "RNN601")


def test_601_unknown_or_mixed_lengths_stay_silent():
    source = '''
    import sys
    import torch.nn as nn
    SEQ_LEN = int(sys.argv[1])
    rnn = nn.RNN(1, 32, batch_first=True)
    chunks = [data[i:i + SEQ_LEN] for i in range(100)]
    '''
    assert found(source) == []
    mixed = '''
    import torch.nn as nn
    window = 200
    seq_len = 20
    rnn = nn.RNN(1, 32, batch_first=True)
    a = [data[i:i + window] for i in range(100)]
    b = [data[i:i + seq_len] for i in range(100)]
    '''
    assert found(mixed) == []


def test_601_keras_input_shape_on_the_layer_and_option():
    source = '''
    from tensorflow.keras.layers import Dense, SimpleRNN
    from tensorflow.keras.models import Sequential
    model = Sequential([SimpleRNN(32, input_shape=(150, 1)), Dense(1)])
    '''
    assert found(source) == [("RNN601", 4)]
    config = Config(options={"RNN601": {"long-sequence": 200}})
    assert found(source, config=config) == []


def test_601_keras_conv_in_front_hides_the_length():
    source = '''
    from keras.utils import pad_sequences
    from keras.models import Sequential
    from keras.layers import Conv1D, Dense, Embedding, MaxPooling1D, SimpleRNN
    x = pad_sequences(x, maxlen=500)
    model = Sequential([Embedding(20000, 32), Conv1D(32, 7), MaxPooling1D(5), SimpleRNN(32), Dense(1)])
    '''
    assert found(source) == []


def test_601_keras_functional_input():
    source = '''
    import keras
    from keras import layers
    inp = keras.Input(shape=(240, 6))
    x = layers.Masking()(inp)
    x = layers.SimpleRNN(64)(x)
    model = keras.Model(inp, layers.Dense(1)(x))
    '''
    assert found(source) == [("RNN601", 6)]


# -- RNN602 recurrent-init-unstable --------------------------------------------------------------


def test_602_torch_weight_hh_normal_large_std():
    source = '''
    import torch.nn as nn
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(4, 256, batch_first=True)
            nn.init.normal_(self.rnn.weight_hh_l0, std=0.1)
    '''
    assert found(source) == [("RNN602", 7)]
    text = message(source, "RNN602")
    assert "0.1 * sqrt(256) = 1.60" in text and "256 x 256" in text


def test_602_band_and_options():
    source = '''
    import torch.nn as nn
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(4, 100, batch_first=True)
            nn.init.normal_(self.rnn.weight_hh_l0, std={std})
    '''
    assert found(source.format(std=0.1)) == []  # 0.1 * sqrt(100) = 1.0
    assert found(source.format(std=0.04)) == [("RNN602", 7)]  # 0.4: forgets
    assert found(source.format(std=0.04), config=Config(options={"RNN602": {"radius-low": 0.3}})) == []


def test_602_named_parameters_loop_branches():
    source = '''
    import torch.nn as nn
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(8, 64, batch_first=True)
            for name, param in self.lstm.named_parameters():
                if "weight_ih" in name:
                    nn.init.normal_(param, std=0.01)
                elif "weight_hh" in name:
                    nn.init.{hh}
                else:
                    param.data.uniform_(-0.01, 0.01)
    '''
    assert found(source.format(hh="uniform_(param, -0.02, 0.02)")) == [("RNN602", 11)]
    assert found(source.format(hh="orthogonal_(param)")) == []
    assert found(source.format(hh="orthogonal_(param, gain=2.0)")) == [("RNN602", 11)]


def test_602_all_parameters_of_a_model_object():
    source = '''
    import torch.nn as nn
    class Seq2Seq(nn.Module):
        def __init__(self, hidden):
            super().__init__()
            self.enc = nn.LSTM(32, hidden)
            self.dec = nn.LSTM(32, hidden)
    net = Seq2Seq({hidden})
    for p in net.parameters():
        p.data.uniform_(-0.08, 0.08)
    '''
    assert found(source.format(hidden=1000)) == []  # 0.046 * sqrt(1000) = 1.46
    assert found(source.format(hidden=64)) == [("RNN602", 10)]  # 0.37


def test_602_hand_written_parameter_and_identity_scale():
    source = '''
    import torch
    import torch.nn as nn
    class Cell(nn.Module):
        def __init__(self, n_in, n_h):
            super().__init__()
            self.W_xh = nn.Parameter(torch.randn(n_in, n_h))
            self.W_hh = nn.Parameter(torch.randn(n_h, n_h){scale})
        def forward(self, x, h):
            return torch.tanh(x @ self.W_xh + h @ self.W_hh)
    cell = Cell(10, 128)
    '''
    assert found(source.format(scale="")) == [("RNN602", 8)]
    assert "11.31" in message(source.format(scale=""), "RNN602")
    assert found(source.format(scale=" / 128 ** 0.5")) == []
    irnn = '''
    import torch
    import torch.nn as nn
    class IRNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(1, 100, batch_first=True)
            self.rnn.weight_hh_l0.data.copy_(torch.eye(100) * {a})
    '''
    assert found(irnn.format(a=0.01)) == [("RNN602", 8)]
    assert found(irnn.format(a=1.0)) == []


def test_602_keras_initializers():
    source = '''
    from tensorflow import keras
    layer = keras.layers.SimpleRNN(64, recurrent_initializer={init})
    '''
    assert found(source.format(init='"random_normal"')) == [("RNN602", 3)]  # 0.05 * 8 = 0.4
    assert found(source.format(init="keras.initializers.RandomNormal(stddev=0.125)")) == []  # 1.0
    assert found(source.format(init="keras.initializers.Orthogonal(gain=0.2)")) == [("RNN602", 3)]
    assert found(source.format(init='"orthogonal"')) == []
    assert found(source.format(init="keras.initializers.Identity()")) == []


# -- RNN603 double-activation-loss ---------------------------------------------------------------

CHAR_MODEL = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

class CharRNN(nn.Module):
    def __init__(self, v, h):
        super().__init__()
        self.rnn = nn.GRU(v, h, batch_first=True)
        self.fc = nn.Linear(h, v)

    def forward(self, x, hidden):
        out, hidden = self.rnn(x, hidden)
        return {activation}(self.fc(out), dim=-1), hidden

model = CharRNN(65, 128)
criterion = nn.{loss}()
for x, y in loader:
    output, hidden = model(x, hidden)
    loss = criterion(output.view(-1, 65), y.view(-1))
'''


def test_603_forward_tuple_into_cross_entropy():
    assert found(CHAR_MODEL.format(activation="F.log_softmax", loss="CrossEntropyLoss")) == [("RNN603", 14)]
    assert found(CHAR_MODEL.format(activation="torch.softmax", loss="CrossEntropyLoss")) == [("RNN603", 14)]
    text = message(CHAR_MODEL.format(activation="F.softmax", loss="CrossEntropyLoss"), "RNN603")
    assert "CharRNN.forward" in text and "line 20" in text


def test_603_near_misses_nll_and_logits():
    assert found(CHAR_MODEL.format(activation="F.log_softmax", loss="NLLLoss")) == []
    assert found(CHAR_MODEL.format(activation="torch.flatten", loss="CrossEntropyLoss")) == []


def test_603_sigmoid_module_into_bce_with_logits_through_a_parameter():
    source = '''
    import torch
    import torch.nn as nn
    class Sentiment(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(100, 64, batch_first=True)
            self.fc = nn.Linear(64, 1)
            self.sig = nn.Sigmoid()
        def forward(self, x):
            out, _ = self.lstm(x)
            out = self.sig(self.fc(out[:, -1]))
            return out
    loss_fn = nn.{loss}()
    def train(model, loader):
        for x, y in loader:
            loss = loss_fn(model(x).squeeze(), y.float())
    '''
    assert found(source.format(loss="BCEWithLogitsLoss")) == [("RNN603", 12)]
    assert found(source.format(loss="BCELoss")) == []


def test_603_conditional_softmax_in_forward_is_silent():
    source = '''
    import torch
    import torch.nn as nn
    class Clf(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(3, 8, batch_first=True)
            self.fc = nn.Linear(8, 4)
        def forward(self, x):
            out = self.fc(self.gru(x)[0][:, -1])
            if not self.training:
                out = torch.softmax(out, dim=1)
            return out
    model = Clf()
    criterion = nn.CrossEntropyLoss()
    loss = criterion(model(x), y)
    '''
    assert found(source) == []


def test_603_softmax_in_the_loop_before_functional_loss():
    source = '''
    import torch
    import torch.nn.functional as F
    for x, y in loader:
        logits = model(x)
        probs = torch.softmax(logits, dim=1)
        loss = F.cross_entropy({arg}, y)
    '''
    assert found(source.format(arg="probs")) == [("RNN603", 6)]
    assert found(source.format(arg="logits")) == []


def test_603_keras_sequential_softmax_with_from_logits():
    source = '''
    import keras
    from keras.layers import LSTM, Dense, Input
    model = keras.Sequential([Input(shape=(100, 6)), LSTM(64), Dense(10, activation="softmax")])
    model.compile(optimizer="adam",
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits={logits}))
    '''
    assert found(source.format(logits="True")) == [("RNN603", 4)]
    assert found(source.format(logits="False")) == []


# -- RNN604 linear-recurrence --------------------------------------------------------------------

LOOP_CELL = '''
import torch
import torch.nn as nn

class Elman(nn.Module):
    def __init__(self, n_in, n_h):
        super().__init__()
        self.x2h = nn.Linear(n_in, n_h)
        self.h2h = nn.Linear(n_h, n_h)

    def forward(self, x):
        h = torch.zeros(x.size(0), 32)
        for t in range(x.size(1)):
            {body}
        return h
'''


def test_604_loop_update_with_linear_modules():
    assert found(LOOP_CELL.format(body="h = self.x2h(x[:, t]) + self.h2h(h)")) == [("RNN604", 14)]


def test_604_through_a_temporary_name_reports_the_computation():
    body = "pre = self.x2h(x[:, t]) + self.h2h(h)\n            h = pre"
    assert found(LOOP_CELL.format(body=body)) == [("RNN604", 14)]
    assert "state 'h'" in message(LOOP_CELL.format(body=body), "RNN604")


def test_604_near_misses_tanh_gate_and_decay():
    assert found(LOOP_CELL.format(body="h = torch.tanh(self.x2h(x[:, t]) + self.h2h(h))")) == []
    assert found(LOOP_CELL.format(body="h = self.x2h(x[:, t]) + self.h2h(h)\n            h = torch.tanh(h)")) == []
    assert found(LOOP_CELL.format(body="h = 0.9 * h + self.x2h(x[:, t])")) == []  # element-wise, no matrix
    assert found(LOOP_CELL.format(body="h = self.h2h(h)\n            h = h / h.norm()")) == []


def test_604_cell_module_fed_back_in_a_loop():
    source = '''
    import torch
    import torch.nn as nn
    class Cell(nn.Module):
        def __init__(self, n_in, n_h):
            super().__init__()
            self.w_x = nn.Linear(n_in, n_h)
            self.w_h = nn.Linear(n_h, n_h, bias=False)
        def forward(self, x_t, h):
            return {ret}
    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = Cell(3, 16)
        def forward(self, x):
            h = torch.zeros(x.size(0), 16)
            for t in range(x.size(1)):
                h = self.cell(x[:, t], h)
            return h
    '''
    assert found(source.format(ret="self.w_x(x_t) + self.w_h(h)")) == [("RNN604", 10)]
    assert found(source.format(ret="torch.tanh(self.w_x(x_t) + self.w_h(h))")) == []


def test_604_fixed_matrix_simulation_is_not_a_cell():
    source = '''
    import torch
    A = torch.randn(4, 4)
    state = torch.zeros(4)
    states = []
    for t in range(100):
        state = A @ state + torch.randn(4)
        states.append(state)
    '''
    assert found(source) == []


# -- RNN605 unbounded-recurrent-activation -------------------------------------------------------


def test_605_keras_relu_and_function_objects():
    source = '''
    import tensorflow as tf
    from tensorflow.keras.layers import GRU, LSTM, SimpleRNN
    a = LSTM(50, activation="relu", return_sequences=True)
    b = GRU(32, activation=tf.nn.relu)
    c = SimpleRNN(16, activation=None)
    d = LSTM(50, recurrent_activation="hard_sigmoid")
    e = SimpleRNN(16, activation="tanh")
    f = LSTM(50, activation="softsign")
    '''
    assert found(source) == [("RNN605", 4), ("RNN605", 5), ("RNN605", 6)]
    messages = {f.line: f.message for f in lint(source) if f.code == "RNN605"}
    assert "cuDNN" in messages[4] and "cuDNN" in messages[5]
    assert "cuDNN" not in messages[6]  # keras has no cuDNN kernel for SimpleRNN


def test_605_torch_nonlinearity_positional_and_keyword():
    source = '''
    import torch.nn as nn
    a = nn.RNN(4, 32, 2, "relu")
    b = nn.RNN(4, 32, nonlinearity="tanh")
    c = nn.RNNCell(4, 32, nonlinearity="relu")
    d = nn.LSTM(4, 32)
    '''
    assert found(source) == [("RNN605", 3), ("RNN605", 5)]


# -- RNN606 single-step-sequences ----------------------------------------------------------------


def test_606_keras_input_shape_one_step():
    source = '''
    from keras.models import Sequential
    from keras.layers import LSTM, Dense
    look_back = {lb}
    model = Sequential()
    model.add(LSTM(4, input_shape=(1, look_back)))
    model.add(LSTM(4))
    model.add(Dense(1))
    '''
    assert found(source.format(lb=3)) == [("RNN606", 6)]
    assert found(source.format(lb=3).replace("(1, look_back)", "(look_back, 1)")) == []


def test_606_keras_stateful_one_step_recurs_across_batches():
    source = '''
    from keras.models import Sequential
    from keras.layers import LSTM, Dense
    model = Sequential()
    model.add(LSTM(4, batch_input_shape=(1, 1, 1), stateful=True))
    model.add(Dense(1))
    '''
    assert found(source) == []


def test_606_torch_unsqueeze_depends_on_batch_first_and_state():
    source = '''
    import torch.nn as nn
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(12, 50, batch_first={bf})
        def forward(self, x{param}):
            out, _ = self.lstm(x.unsqueeze({dim}){state})
            return out
    '''
    assert found(source.format(bf="True", param="", dim=1, state="")) == [("RNN606", 6)]
    assert found(source.format(bf="False", param="", dim=0, state="")) == [("RNN606", 6)]
    assert found(source.format(bf="True", param="", dim=-1, state="")) == []
    assert found(source.format(bf="False", param="", dim=1, state="")) == []
    assert found(source.format(bf="True", param=", hidden", dim=1, state=", hidden")) == []


def test_606_torch_one_step_through_a_concatenation():
    source = '''
    import torch
    import torch.nn as nn
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(12 + 4, 50, batch_first=True)
        def forward(self, x, extra):
            step = torch.cat((x.unsqueeze(1), extra), dim={dim})
            out, _ = self.lstm(step)
            return out
    '''
    assert found(source.format(dim=2)) == [("RNN606", 7)]
    assert found(source.format(dim=-1)) == [("RNN606", 7)]
    assert found(source.format(dim=1)) == []  # joined along time: more than one step


def test_606_torch_window_of_one():
    source = '''
    import torch
    import torch.nn as nn
    WINDOW = 1
    series = torch.randn(5000)
    x = torch.stack([series[i:i + WINDOW] for i in range(len(series) - WINDOW)])
    gru = nn.GRU(1, 16)
    '''
    assert found(source) == [("RNN606", 7)]


# -- fixtures ------------------------------------------------------------------------------------


def test_near_miss_variant_is_silent_and_each_variant_fires_its_rule():
    near = (ROOT / "fixtures" / "variants" / "rnn6_near_misses_silent.py").read_text()
    assert found(near) == []
    for path in sorted((ROOT / "fixtures" / "variants").glob("rnn60*_*.py")):
        code = "RNN" + path.name[3:6]
        codes = {c for c, _ in found(path.read_text())}
        assert codes == {code}, (path.name, codes)


def test_602_hand_written_matrix_reset_afterwards_is_silent():
    source = '''
    import math
    import torch
    import torch.nn as nn
    class RNN(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.hidden_size = hidden_size
            self.W_hh = nn.Parameter(torch.randn(hidden_size, hidden_size))
            self.reset_parameters()
        def reset_parameters(self):
            std = 1.0 / math.sqrt(self.hidden_size)
            for weight in self.parameters():
                weight.data.uniform_(-std, std)
        def forward(self, x_t, h_prev):
            return torch.tanh(x_t + h_prev @ self.W_hh)
    rnn = RNN(8, 64)
    '''
    assert found(source) == []


# -- RNN602 through an init function and a model of submodules ---------------------------------

SEQ2SEQ_INIT = '''
import argparse
import math
import torch.nn as nn
parser = argparse.ArgumentParser()
parser.add_argument("--emb", type=int, default=128)
parser.add_argument("--hidden", type=int{hidden_default})
parser.add_argument("--dec-hidden", type=int, default={dec_hidden})
args = parser.parse_args()

class Encoder(nn.Module):
    def __init__(self, vocab, emb, hidden):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.rnn = nn.GRU(emb, hidden, batch_first=True, bidirectional=True)

class Decoder(nn.Module):
    def __init__(self, vocab, emb, hidden):
        super().__init__()
        self.rnn = nn.{dec_kind}(emb, hidden, batch_first=True)
        self.fc_out = nn.Linear(hidden, vocab)

class Seq2Seq(nn.Module):
    def __init__(self, encoder, decoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

def init_weights(model):
    for name, param in model.named_parameters():
{body}

encoder = Encoder(1000, args.emb, args.hidden)
decoder = Decoder(1200, args.emb, args.dec_hidden)
model = Seq2Seq(encoder, decoder)
{call}
'''

WEIGHT_NORMAL = '''        if "weight" in name:
            nn.init.normal_(param, std={std})
        else:
            nn.init.constant_(param, 0)'''


def seq2seq_init(std="0.01", call="init_weights(model)", hidden_default=", default=512", dec_hidden=512,
                 dec_kind="GRU", body=None):
    return SEQ2SEQ_INIT.format(hidden_default=hidden_default, dec_hidden=dec_hidden, dec_kind=dec_kind,
                               body=body if body is not None else WEIGHT_NORMAL.format(std=std), call=call)


def test_602_init_function_on_a_model_of_submodules_with_argparse_hidden():
    source = seq2seq_init()
    assert found(source) == [("RNN602", 32)]
    text = message(source, "RNN602")
    assert "normal_(std=0.01)" in text and "512 x 512" in text and "0.01 * sqrt(512) = 0.23" in text
    assert "parameters of model" in text and "forgets" in text


def test_602_model_apply_and_two_hidden_sizes():
    source = seq2seq_init(call="model.apply(init_weights)", dec_hidden=256, dec_kind="LSTM")
    assert found(source) == [("RNN602", 32)]
    text = message(source, "RNN602")
    assert "256 x 256 and 512 x 512" in text
    assert "0.01 * sqrt(256) = 0.16" in text and "0.01 * sqrt(512) = 0.23" in text


def test_602_dim_guard_and_positional_std():
    body = '''        if param.dim() > 1 and "weight" in name:
            nn.init.normal_(param, 0.0, 0.2)'''
    source = seq2seq_init(body=body, call="model.apply(init_weights)")
    assert found(source) == [("RNN602", 32)]
    assert "0.2 * sqrt(512) = 4.53" in message(source, "RNN602")


def test_602_self_apply_with_an_init_method():
    source = '''
    import torch.nn as nn
    class Tagger(nn.Module):
        def __init__(self, hidden=300):
            super().__init__()
            self.lstm = nn.LSTM(50, hidden, batch_first=True)
            self.out = nn.Linear(hidden, 9)
            self.apply(self._init_weights)
        def _init_weights(self, module):
            for name, p in module.named_parameters():
                if "weight_hh" in name:
                    p.data.normal_(0, {std})
    model = Tagger()
    '''
    assert found(source.format(std="0.2")) == [("RNN602", 12)]  # 0.2 * sqrt(300) = 3.46
    assert found(source.format(std="0.05")) == []  # 0.87


def test_602_init_function_near_misses():
    assert found(seq2seq_init(std="0.05")) == []  # 0.05 * sqrt(512) = 1.13
    assert found(seq2seq_init(std="1 / math.sqrt(args.hidden)")) == []
    # the hidden size is not known (no default): silent
    assert found(seq2seq_init(hidden_default="")) == []
    # never called on a model with recurrent layers
    assert found(seq2seq_init(call="")) == []
    # weight_hh is caught by the first branch; the elif only sees the other weights
    body = '''        if "weight_hh" in name:
            nn.init.orthogonal_(param)
        elif "weight" in name:
            nn.init.normal_(param, std=0.01)
        else:
            nn.init.zeros_(param)'''
    assert found(seq2seq_init(body=body)) == []
    # a bias, not the recurrent matrix
    body = '''        if "bias_hh" in name:
            nn.init.normal_(param, std=0.01)'''
    assert found(seq2seq_init(body=body)) == []


def test_602_apply_function_guarded_by_another_module_type_is_silent():
    source = seq2seq_init(call="model.apply(init_weights)").replace(
        "def init_weights(model):\n    for", "def init_weights(model):\n  if isinstance(model, nn.Linear):\n    for")
    assert "isinstance(model, nn.Linear)" in source
    assert found(source) == []


# -- RNN603 through a decoder, an output buffer and a loss helper ------------------------------

SEQ2SEQ_LOSS = '''
import torch
import torch.nn as nn
import torch.nn.functional as F

class Decoder(nn.Module):
    def __init__(self, vocab, hidden):
        super().__init__()
        self.rnn = nn.GRU(hidden, hidden, batch_first=True)
        self.fc_out = nn.Linear(hidden, vocab)

    def forward(self, x, hidden):
        out, hidden = self.rnn(x, hidden)
        return {act}, hidden

class Seq2Seq(nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, trg, hidden):
        batch, trg_len = trg.shape
        logits = torch.zeros(batch, trg_len, 100)
        x = trg[:, :1]
        for t in range(1, trg_len):
            step_logits, hidden = self.decoder(x, hidden)
            logits[:, t] = step_logits
        return logits

def sequence_loss(logits, trg, criterion):
    V = logits.size(-1)
    return criterion(logits.reshape(-1, V), trg.reshape(-1))

def train_epoch(model, loader, criterion):
    for trg, h in loader:
        logits = model(trg, h)
        loss = sequence_loss(logits, trg, criterion)
        loss.backward()

model = Seq2Seq(Decoder(100, 64))
criterion = nn.{loss}(ignore_index=0)
train_epoch(model, loader, criterion)
'''


def seq2seq_loss(act="F.log_softmax(self.fc_out(out.squeeze(1)), dim=1)", loss="CrossEntropyLoss"):
    return SEQ2SEQ_LOSS.format(act=act, loss=loss)


def test_603_decoder_buffer_and_loss_helper():
    source = seq2seq_loss()
    assert found(source) == [("RNN603", 14)]
    text = message(source, "RNN603")
    assert "Decoder.forward applies log_softmax" in text and "nn.CrossEntropyLoss (line 32)" in text
    source = seq2seq_loss(act="torch.softmax(self.fc_out(out[:, -1]), -1)")
    assert found(source) == [("RNN603", 14)]


def test_603_time_major_buffer_and_functional_loss_in_the_helper():
    source = '''
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Decoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = nn.LSTM(32, 64)
            self.out = nn.Linear(64, 500)
            self.logsm = nn.LogSoftmax(dim=1)

        def forward(self, x, state):
            output, state = self.cell(x, state)
            return self.logsm(self.out(output[0])), state

    class Translator(nn.Module):
        def __init__(self):
            super().__init__()
            self.decoder = Decoder()

        def forward(self, trg, state):
            outputs = torch.zeros(trg.size(0), trg.size(1), 500)
            for t in range(trg.size(0)):
                outputs[t], state = self.decoder(trg[t:t + 1], state)
            return outputs

    def masked_loss(pred, target):
        return F.{loss}(pred.view(-1, 500), target.view(-1), ignore_index=0)

    model = Translator()
    for trg, state in loader:
        loss = masked_loss(model(trg, state), trg)
    '''
    # `outputs[t], state = ...` unpacks into the buffer: not read, stays silent
    assert found(source.format(loss="cross_entropy")) == []
    written = source.replace("outputs[t], state = self.decoder(trg[t:t + 1], state)",
                             "step, state = self.decoder(trg[t:t + 1], state)\n            outputs[t] = step")
    assert found(written.format(loss="cross_entropy")) == [("RNN603", 15)]
    assert found(written.format(loss="nll_loss")) == []


def test_603_decoder_buffer_near_misses():
    # log_softmax with NLLLoss is the correct pairing
    assert found(seq2seq_loss(loss="NLLLoss")) == []
    # the decoder returns logits
    assert found(seq2seq_loss(act="self.fc_out(out.squeeze(1))")) == []
    # one write of the buffer is not normalised
    source = seq2seq_loss().replace("            logits[:, t] = step_logits",
                                    "            logits[:, t] = step_logits\n        logits[:, 0] = x.float()")
    assert found(source) == []
    # the helper is also called with something the file does not show
    source = seq2seq_loss() + "loss = sequence_loss(load_logits(), trg, criterion)\n"
    assert found(source) == []
    # the helper's criterion is an NLLLoss at one call: not one loss
    source = seq2seq_loss() + "sequence_loss(model(trg, h), trg, nn.NLLLoss())\n"
    assert found(source) == []


def test_603_buffer_also_written_by_unpacking_is_silent():
    source = seq2seq_loss().replace("            logits[:, t] = step_logits",
                                    "            logits[:, t] = step_logits\n"
                                    "        logits[:, 0], _ = other(x)")
    assert "logits[:, 0], _ = other(x)" in source
    assert found(source) == []
