"""RNN403, RNN404 (dropout and eval mode) and RNN507, RNN508, RNN512, RNN513 (recurrent state).

Every firing case names the exact line; every near-miss must stay silent for its code."""

from __future__ import annotations

import textwrap

import pytest
from lintutil import lint


def lines(source: str, code: str):
    return [f.line for f in lint(source) if f.code == code]


def messages(source: str, code: str):
    return [f.message for f in lint(source) if f.code == code]


# A word-level language model whose forward takes and returns the state.
LM = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn
    from torch.utils.data import DataLoader, RandomSampler, TensorDataset


    class WordLM(nn.Module):
        def __init__(self, vocab, hidden):
            super().__init__()
            self.embed = nn.Embedding(vocab, hidden)
            self.lstm = nn.LSTM(hidden, hidden, num_layers=2)
            self.out = nn.Linear(hidden, vocab)

        def forward(self, x, hidden=None):
            y, hidden = self.lstm(self.embed(x), hidden)
            return self.out(y), hidden


    def repackage_hidden(h):
        if isinstance(h, torch.Tensor):
            return h.detach()
        return tuple(repackage_hidden(v) for v in h)


    model = WordLM(1000, 64)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    stream = torch.randint(0, 1000, (5000, 20))
    """
)
LM_LINES = LM.count("\n")


def lm(body: str) -> str:
    return LM + textwrap.dedent(body)


# ---------------------------------------------------------------- RNN507 hidden-not-detached


def test_rnn507_state_fed_back_without_detach():
    src = lm(
        """\
        for epoch in range(3):
            hidden = None
            for i in range(0, stream.size(0) - 35, 35):
                optimizer.zero_grad()
                logits, hidden = model(stream[i:i + 35], hidden)
                loss = logits.sum()
                loss.backward()
                optimizer.step()
        """
    )
    assert lines(src, "RNN507") == [LM_LINES + 5]


def test_rnn507_tuple_state_and_retain_graph():
    src = lm(
        """\
        h = torch.zeros(2, 20, 64)
        c = torch.zeros(2, 20, 64)
        for i in range(0, stream.size(0) - 35, 35):
            optimizer.zero_grad()
            logits, (h, c) = model(stream[i:i + 35], (h, c))
            loss = logits.sum()
            loss.backward(retain_graph=True)
            optimizer.step()
        """
    )
    assert lines(src, "RNN507") == [LM_LINES + 5]
    assert "retain_graph=True" in messages(src, "RNN507")[0]


def test_rnn507_time_step_loop_inside_batch_loop():
    src = textwrap.dedent(
        """\
        import torch
        import torch.nn as nn

        cell = nn.GRUCell(8, 32)
        head = nn.Linear(32, 1)
        optimizer = torch.optim.Adam(list(cell.parameters()) + list(head.parameters()))
        batches = [torch.randn(16, 50, 8) for _ in range(10)]
        h = torch.zeros(16, 32)
        for epoch in range(5):
            for xb in batches:
                optimizer.zero_grad()
                for t in range(xb.size(1)):
                    h = cell(xb[:, t], h)
                loss = head(h).pow(2).mean()
                loss.backward()
                optimizer.step()
        """
    )
    assert lines(src, "RNN507") == [13]


@pytest.mark.parametrize(
    "cut",
    [
        "hidden = repackage_hidden(hidden)",
        "hidden = tuple(s.detach() for s in hidden)",
        "hidden = (hidden[0].data, hidden[1].data)",
        "hidden = hidden[0].detach(), hidden[1].detach()",
        "hidden = model.lstm.weight_hh_l0.new_zeros(2, 20, 64), model.lstm.weight_hh_l0.new_zeros(2, 20, 64)",
        "for s in hidden: s.detach_()",
    ],
)
def test_rnn507_silent_when_the_state_is_cut_or_reset(cut):
    src = lm(
        f"""\
        hidden = None
        for i in range(0, stream.size(0) - 35, 35):
            optimizer.zero_grad()
            if hidden is not None:
                {cut}
            logits, hidden = model(stream[i:i + 35], hidden)
            loss = logits.sum()
            loss.backward()
            optimizer.step()
        """
    )
    assert lines(src, "RNN507") == []


def test_rnn507_silent_in_evaluation_loop_and_inside_forward_time_loop():
    src = lm(
        """\
        model.eval()
        hidden = None
        with torch.no_grad():
            for i in range(0, stream.size(0) - 35, 35):
                logits, hidden = model(stream[i:i + 35], hidden)
        """
    )
    assert lines(src, "RNN507") == []
    # The classic char-RNN step: the state is carried over the time steps of one sequence and
    # started afresh per sequence; backward() runs after the sequence.
    src = textwrap.dedent(
        """\
        import torch
        import torch.nn as nn

        rnn = nn.RNNCell(10, 20)
        optimizer = torch.optim.SGD(rnn.parameters(), lr=0.01)

        def train(seq):
            hidden = torch.zeros(1, 20)
            optimizer.zero_grad()
            for i in range(seq.size(0)):
                hidden = rnn(seq[i], hidden)
            hidden.sum().backward()
            optimizer.step()

        for seq in [torch.randn(7, 1, 10)]:
            train(seq)
        """
    )
    assert lines(src, "RNN507") == []


def test_rnn507_silent_when_forward_detaches_the_state():
    src = LM.replace(
        "        return self.out(y), hidden\n",
        "        return self.out(y), tuple(h.detach() for h in hidden)\n",
    ) + textwrap.dedent(
        """\
        hidden = None
        for i in range(0, stream.size(0) - 35, 35):
            optimizer.zero_grad()
            logits, hidden = model(stream[i:i + 35], hidden)
            logits.sum().backward()
            optimizer.step()
        """
    )
    assert lines(src, "RNN507") == []


# ---------------------------------------------------------------- RNN512 state-leaks-across-sequences


def test_rnn512_detached_state_carried_over_a_shuffled_loader():
    src = lm(
        """\
        loader = DataLoader(TensorDataset(stream, stream), batch_size=32, shuffle=True)
        hidden = None
        for xb, yb in loader:
            optimizer.zero_grad()
            if hidden is not None:
                hidden = repackage_hidden(hidden)
            logits, hidden = model(xb, hidden)
            logits.sum().backward()
            optimizer.step()
        """
    )
    assert lines(src, "RNN512") == [LM_LINES + 7]
    assert lines(src, "RNN507") == []
    assert f"line {LM_LINES + 1}" in messages(src, "RNN512")[0]


def test_rnn512_loader_parameter_and_random_sampler():
    src = lm(
        """\
        def train_epoch(net, batches):
            hidden = None
            for xb, yb in batches:
                optimizer.zero_grad()
                logits, hidden = net(xb, hidden)
                hidden = repackage_hidden(hidden)
                logits.sum().backward()
                optimizer.step()


        data = TensorDataset(stream, stream)
        train_loader = DataLoader(data, batch_size=32, sampler=RandomSampler(data))
        for epoch in range(3):
            train_epoch(model, train_loader)
        """
    )
    assert lines(src, "RNN512") == [LM_LINES + 5]


def test_rnn512_and_rnn507_both_fire_on_an_undetached_shuffled_carry():
    src = lm(
        """\
        hidden = None
        for xb, yb in DataLoader(TensorDataset(stream, stream), batch_size=32, shuffle=True):
            optimizer.zero_grad()
            logits, hidden = model(xb, hidden)
            logits.sum().backward()
            optimizer.step()
        """
    )
    assert lines(src, "RNN512") == [LM_LINES + 4]
    assert lines(src, "RNN507") == [LM_LINES + 4]


@pytest.mark.parametrize(
    "loader",
    [
        "DataLoader(TensorDataset(stream, stream), batch_size=32, shuffle=False)",
        "DataLoader(TensorDataset(stream, stream), batch_size=32)",
    ],
)
def test_rnn512_silent_on_ordered_batches(loader):
    src = lm(
        f"""\
        hidden = None
        for xb, yb in {loader}:
            optimizer.zero_grad()
            if hidden is not None:
                hidden = repackage_hidden(hidden)
            logits, hidden = model(xb, hidden)
            logits.sum().backward()
            optimizer.step()
        """
    )
    assert lines(src, "RNN512") == []


def test_rnn512_silent_when_each_batch_starts_fresh_or_the_loader_is_unknown():
    src = lm(
        """\
        loader = DataLoader(TensorDataset(stream, stream), batch_size=32, shuffle=True)
        for xb, yb in loader:
            hidden = None
            optimizer.zero_grad()
            logits, hidden = model(xb, hidden)
            logits.sum().backward()
            optimizer.step()


        def train_epoch(net, batches):
            hidden = None
            for xb, yb in batches:
                optimizer.zero_grad()
                logits, hidden = net(xb, hidden)
                hidden = repackage_hidden(hidden)
                logits.sum().backward()
                optimizer.step()
        """
    )
    assert lines(src, "RNN512") == []


KERAS_STATEFUL = textwrap.dedent(
    """\
    import numpy as np
    from tensorflow import keras

    x = np.random.rand(3200, 50, 4).astype("float32")
    y = np.random.rand(3200, 1).astype("float32")
    model = keras.Sequential([
        keras.layers.Input(batch_shape=(32, 50, 4)),
        keras.layers.LSTM(64, stateful=True),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer=keras.optimizers.Adam(clipnorm=1.0), loss="mse")
    """
)


@pytest.mark.parametrize(
    "fit", ["model.fit(x, y, epochs=5, batch_size=32)", "model.fit(x, y, epochs=5, batch_size=32, shuffle=True)"]
)
def test_rnn512_keras_stateful_with_shuffle(fit):
    src = KERAS_STATEFUL + fit + "\n"
    assert lines(src, "RNN512") == [8]


def test_rnn512_keras_stateful_in_order_is_silent():
    src = KERAS_STATEFUL + textwrap.dedent(
        """\
        for epoch in range(5):
            model.fit(x, y, epochs=1, batch_size=32, shuffle=False)
            model.reset_states()
        """
    )
    assert lines(src, "RNN512") == []


# ---------------------------------------------------------------- RNN508 state-wrong-device

MODEL_508 = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn
    from torch.autograd import Variable


    class Tagger(nn.Module):
        def __init__(self, hidden):
            super().__init__()
            self.hidden = hidden
            self.lstm = nn.LSTM(16, hidden, num_layers=2, batch_first=True)
            self.fc = nn.Linear(hidden, 5)

        def forward(self, x):
            h0 = {h0}
            c0 = {c0}
            out, _ = self.lstm(x, (h0, c0))
            return self.fc(out)


    model = Tagger(64){move}
    """
)


def model_508(h0, c0="torch.zeros(2, x.size(0), self.hidden, device=x.device)", move=".cuda()"):
    return MODEL_508.format(h0=h0, c0=c0, move=move)


@pytest.mark.parametrize(
    "h0,move",
    [
        ("torch.zeros(2, x.size(0), self.hidden)", ".cuda()"),
        ("torch.zeros(2, x.size(0), self.hidden)", '.to(torch.device("cuda" if torch.cuda.is_available() else "cpu"))'),
        ("Variable(torch.zeros(2, x.size(0), self.hidden))", ".to(args_device)"),
    ],
)
def test_rnn508_state_created_on_cpu_for_a_gpu_model(h0, move):
    assert lines(model_508(h0, move=move), "RNN508") == [14]


def test_rnn508_init_hidden_called_from_forward():
    src = textwrap.dedent(
        """\
        import torch
        import torch.nn as nn

        device = "cuda:0"


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.gru = nn.GRU(8, 32, batch_first=True)

            def init_hidden(self, batch_size):
                return torch.zeros(1, batch_size, 32)

            def forward(self, x):
                out, _ = self.gru(x, self.init_hidden(x.size(0)))
                return out[:, -1]


        net = Net().to(device)
        """
    )
    assert lines(src, "RNN508") == [13]


@pytest.mark.parametrize(
    "h0,move",
    [
        ("torch.zeros(2, x.size(0), self.hidden, device=x.device)", ".cuda()"),
        ("torch.zeros(2, x.size(0), self.hidden).to(x.device)", ".cuda()"),
        ("x.new_zeros(2, x.size(0), self.hidden)", ".cuda()"),
        ("torch.zeros(2, x.size(0), self.hidden).type_as(x)", ".cuda()"),
        ("torch.zeros(2, x.size(0), self.hidden)", ""),
        ("torch.zeros(2, x.size(0), self.hidden)", '.to("cpu")'),
    ],
)
def test_rnn508_silent_when_the_state_follows_the_input_or_no_gpu(h0, move):
    assert lines(model_508(h0, move=move), "RNN508") == []


# ---------------------------------------------------------------- RNN513 random-initial-state


GRU_MODEL = """\
import torch
import torch.nn as nn


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(4, 16, batch_first=True)
        self.fc = nn.Linear(16, 1)

    def forward(self, x):
        h0 = torch.zeros(1, x.size(0), 16)
        out, _ = self.rnn(x, h0)
        return self.fc(out[:, -1])
"""


def _check_folder(folder):  # type: ignore[no-untyped-def]
    from rnnlint.config import Config
    from rnnlint.runner import run

    return [(f.path.rsplit("/", 1)[-1], f.code, f.line) for f in run(sorted(str(p) for p in folder.glob("*.py")),
                                                                      Config(root=folder), jobs=1).findings
            if f.code == "RNN508"]


def test_rnn508_sibling_file_that_uses_the_model_moves_it(tmp_path):
    (tmp_path / "model.py").write_text(GRU_MODEL)
    (tmp_path / "train.py").write_text("import torch\nfrom model import Net\nnet = Net().to(torch.device('cuda'))\n")
    assert _check_folder(tmp_path) == [("model.py", "RNN508", 12)]
    (tmp_path / "train.py").write_text("import torch\nimport model\nnet = model.Net()\nnet.cuda()\n")
    assert _check_folder(tmp_path) == [("model.py", "RNN508", 12)]


def test_rnn508_unrelated_scripts_in_the_folder_say_nothing(tmp_path):
    # A GPU script beside the model file that neither imports it nor names its class.
    (tmp_path / "model.py").write_text(GRU_MODEL)
    (tmp_path / "other.py").write_text("import torch\nt = torch.ones(3).cuda()\n")
    assert _check_folder(tmp_path) == []
    # A self-contained CPU script: it builds its model itself and never moves it.
    (tmp_path / "model.py").write_text(GRU_MODEL + "\n\nnet = Net()\nprint(net(torch.randn(2, 5, 4)))\n")
    (tmp_path / "other.py").write_text("import torch\nfrom model import Net\nNet().cuda()\n")
    assert _check_folder(tmp_path) == []


@pytest.mark.parametrize(
    "h0",
    [
        "torch.randn(2, x.size(0), self.hidden, device=x.device)",
        "torch.rand(2, x.size(0), self.hidden).to(x.device)",
        "torch.empty(2, x.size(0), self.hidden, device=x.device).normal_()",
        "nn.init.xavier_normal_(torch.empty(2, x.size(0), self.hidden, device=x.device))",
    ],
)
def test_rnn513_random_state_every_forward(h0):
    assert lines(model_508(h0), "RNN513") == [14]
    assert lines(model_508(h0), "RNN508") == []


def test_rnn513_lstmcell_loop_and_training_loop_state():
    src = textwrap.dedent(
        """\
        import torch
        import torch.nn as nn


        class CellNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.cell = nn.LSTMCell(3, 24)
                self.fc = nn.Linear(24, 1)

            def forward(self, x):
                h = torch.randn(x.size(0), 24, device=x.device)
                c = torch.zeros(x.size(0), 24, device=x.device)
                for t in range(x.size(1)):
                    h, c = self.cell(x[:, t], (h, c))
                return self.fc(h)


        class SeqNet(nn.Module):
            def __init__(self):
                super().__init__()
                self.gru = nn.GRU(3, 24, batch_first=True)

            def forward(self, x, h0):
                out, _ = self.gru(x, h0)
                return out[:, -1]


        net = SeqNet()
        for xb in [torch.randn(8, 10, 3)]:
            h0 = torch.randn(1, xb.size(0), 24)
            y = net(xb, h0)
        """
    )
    assert lines(src, "RNN513") == [12, 31]


@pytest.mark.parametrize(
    "h0",
    [
        "torch.zeros(2, x.size(0), self.hidden, device=x.device)",
        "self.h0.expand(-1, x.size(0), -1).contiguous()",
    ],
)
def test_rnn513_silent_on_zeros_or_learned_state(h0):
    assert lines(model_508(h0), "RNN513") == []


def test_rnn513_silent_for_training_only_noise():
    src = textwrap.dedent(
        """\
        import torch
        import torch.nn as nn


        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.gru = nn.GRU(3, 24, batch_first=True)
                self.h0 = nn.Parameter(torch.randn(1, 1, 24))

            def forward(self, x):
                h0 = torch.zeros(1, x.size(0), 24, device=x.device)
                if self.training:
                    h0 = torch.randn(1, x.size(0), 24, device=x.device) * 0.01
                out, _ = self.gru(x, h0)
                return out[:, -1]
        """
    )
    assert lines(src, "RNN513") == []


# ---------------------------------------------------------------- RNN403 eval-mode-missing

CLASSIFIER = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn


    class Classifier(nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = nn.GRU(6, 64, num_layers={layers}, dropout=0.3, batch_first=True)
            self.fc = nn.Linear(64, 4)

        def forward(self, x):
            out, _ = self.gru(x)
            return self.fc(out[:, -1])


    x_train, y_train = torch.randn(512, 30, 6), torch.randint(0, 4, (512,))
    x_val, y_val = torch.randn(128, 30, 6), torch.randint(0, 4, (128,))
    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    criterion = nn.CrossEntropyLoss()


    def train_epoch():
        model.train()
        for i in range(0, len(x_train), 32):
            optimizer.zero_grad()
            loss = criterion(model(x_train[i:i + 32]), y_train[i:i + 32])
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    """
)
CLS_LINES = CLASSIFIER.count("\n")


def classifier(body: str, layers: int = 2) -> str:
    return CLASSIFIER.format(layers=layers) + textwrap.dedent(body)


def test_rnn403_evaluate_helper_without_eval():
    src = classifier(
        """\


        def evaluate(net, xs, ys):
            with torch.no_grad():
                logits = net(xs)
                return criterion(logits, ys).item()


        for epoch in range(10):
            train_epoch()
            print(evaluate(model, x_val, y_val))
        """
    )
    assert lines(src, "RNN403") == [CLS_LINES + 5]
    assert "nn.GRU(dropout=0.3, num_layers=2)" in messages(src, "RNN403")[0]


def test_rnn403_decorated_no_grad_and_final_predictions():
    src = classifier(
        """\


        @torch.no_grad()
        def accuracy(xs, ys):
            return (model(xs).argmax(1) == ys).float().mean().item()


        for epoch in range(10):
            train_epoch()
            print(accuracy(x_val, y_val))

        train_epoch()
        predictions = model(x_val).argmax(1)
        """
    )
    assert lines(src, "RNN403") == [CLS_LINES + 5, CLS_LINES + 13]


def test_rnn403_eval_in_epoch_loop_never_undone():
    src = classifier(
        """\
        model.train()
        for epoch in range(10):
            for i in range(0, len(x_train), 32):
                optimizer.zero_grad()
                loss = criterion(model(x_train[i:i + 32]), y_train[i:i + 32])
                loss.backward()
                optimizer.step()
            model.eval()
            with torch.no_grad():
                print(criterion(model(x_val), y_val).item())
        """
    )
    assert lines(src, "RNN403") == [CLS_LINES + 8]
    assert "no model.train() in that loop undoes it" in messages(src, "RNN403")[0]


@pytest.mark.parametrize(
    "body",
    [
        # eval() inside the helper
        """\
        def evaluate(net, xs, ys):
            net.eval()
            with torch.no_grad():
                return criterion(net(xs), ys).item()


        for epoch in range(10):
            train_epoch()
            print(evaluate(model, x_val, y_val))
        """,
        # eval() before the helper's call site, train() at the top of each epoch
        """\
        def evaluate(xs, ys):
            with torch.no_grad():
                return criterion(model(xs), ys).item()


        for epoch in range(10):
            train_epoch()
            model.eval()
            print(evaluate(x_val, y_val))
        """,
        # a helper with no call site in this file: unknown
        """\
        def evaluate(net, xs, ys):
            with torch.no_grad():
                return criterion(net(xs), ys).item()
        """,
    ],
)
def test_rnn403_silent_when_eval_runs_first(body):
    assert lines(classifier(body), "RNN403") == []


def test_rnn403_silent_without_active_dropout():
    body = """\
    for epoch in range(10):
        train_epoch()
        with torch.no_grad():
            print(criterion(model(x_val), y_val).item())
    """
    # num_layers=1: the GRU's dropout does nothing (RNN401's business), so eval() changes nothing
    assert lines(classifier(body, layers=1), "RNN403") == []
    assert lines(classifier(body, layers=2), "RNN403") == [CLS_LINES + 4]


# A translation model that gets its encoder and decoder as constructor arguments.
SEQ2SEQ = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn


    class Encoder(nn.Module):
        def __init__(self, vocab, hidden):
            super().__init__()
            self.embed = nn.Embedding(vocab, hidden)
            self.rnn = {encoder_rnn}
            self.dropout = nn.Dropout({p})

        def forward(self, src):
            return self.rnn(self.dropout(self.embed(src)))


    class Decoder(nn.Module):
        def __init__(self, vocab, hidden):
            super().__init__()
            self.embed = nn.Embedding(vocab, hidden)
            self.rnn = nn.GRU(hidden, hidden, batch_first=True)
            self.out = nn.Linear(hidden, vocab)

        def forward(self, trg, hidden):
            y, hidden = self.rnn(self.embed(trg), hidden)
            return self.out(y), hidden


    class Seq2Seq(nn.Module):
        def __init__(self, encoder, decoder):
            super().__init__()
            self.encoder = encoder
            self.decoder = decoder

        def forward(self, src, trg):
            _, hidden = self.encoder(src)
            logits, _ = self.decoder(trg, hidden)
            return logits


    def train_epoch(model, loader, optimizer, criterion):
        for src, trg in loader:
            optimizer.zero_grad()
            loss = criterion(model(src, trg).flatten(0, 1), trg.flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()


    def greedy_translate(model, sentence):
        model.eval()
        with torch.no_grad():
            return model(sentence, sentence).argmax(-1)


    """
)
S2S_LINES = SEQ2SEQ.count("\n")


def seq2seq(*parts: str, p: str = "0.3", encoder_rnn: str = "nn.GRU(hidden, hidden, batch_first=True)") -> str:
    return SEQ2SEQ.format(p=p, encoder_rnn=encoder_rnn) + "".join(textwrap.dedent(part) for part in parts)


EVALUATE_NO_EVAL = """\
def evaluate(model, loader, criterion):
    total = 0.0
    with torch.no_grad():
        for src, trg in loader: total += criterion(model(src, trg).flatten(0, 1), trg.flatten()).item()
    return total / len(loader)


"""


def test_rnn403_submodules_passed_in_and_eval_only_after_the_evaluation():
    # eval() in greedy_translate comes after evaluate() in the epoch loop: it does not cover it
    src = seq2seq(
        EVALUATE_NO_EVAL,
        """\
        model = Seq2Seq(Encoder(1000, 64), Decoder(1200, 64))
        optimizer = torch.optim.Adam(model.parameters())
        criterion = nn.CrossEntropyLoss()
        train_loader, val_loader = [], []
        for epoch in range(10):
            model.train()
            train_epoch(model, train_loader, optimizer, criterion)
            val_loss = evaluate(model, val_loader, criterion)
            print(greedy_translate(model, torch.zeros(1, 5, dtype=torch.long)))
        """
    )
    assert lines(src, "RNN403") == [S2S_LINES + 4]
    assert "Dropout(p=0.3) (in Encoder) in Seq2Seq" in messages(src, "RNN403")[0]


def test_rnn403_named_submodules_stacked_gru_and_a_test_pass_after_the_loop():
    # dropout= of a two-layer GRU in the encoder; names and keywords; all inside main(). The test
    # pass after the loop runs in eval mode (greedy_translate set it), the validation pass does not.
    src = seq2seq(
        EVALUATE_NO_EVAL,
        """\
        def main():
            encoder = Encoder(1000, 64)
            decoder = Decoder(1200, 64)
            model = Seq2Seq(encoder=encoder, decoder=decoder).to("cuda")
            optimizer = torch.optim.Adam(model.parameters())
            criterion = nn.CrossEntropyLoss()
            train_loader, val_loader, test_loader = [], [], []
            for epoch in range(10):
                model.train()
                train_epoch(model, train_loader, optimizer, criterion)
                val_loss = evaluate(model, val_loader, criterion)
                print(greedy_translate(model, torch.zeros(1, 5, dtype=torch.long)))
            print(evaluate(model, test_loader, criterion))


        main()
        """,
        p="0.0",
        encoder_rnn="nn.GRU(hidden, hidden, num_layers=2, dropout=0.25, batch_first=True)",
    )
    assert lines(src, "RNN403") == [S2S_LINES + 4]
    assert "nn.GRU(dropout=0.25, num_layers=2) (in Encoder) in Seq2Seq" in messages(src, "RNN403")[0]


@pytest.mark.parametrize(
    "evaluate,loop_eval,p",
    [
        # eval() in the loop body, before the evaluation call
        (EVALUATE_NO_EVAL, "model.eval()\n", "0.3"),
        # eval() inside evaluate()
        (EVALUATE_NO_EVAL.replace("    total = 0.0\n", "    model.eval()\n    total = 0.0\n"), "", "0.3"),
        # the submodules passed in have no active dropout
        (EVALUATE_NO_EVAL, "", "0.0"),
    ],
)
def test_rnn403_silent_for_passed_in_submodules_when_eval_runs_first_or_no_dropout(evaluate, loop_eval, p):
    loop = textwrap.indent(loop_eval, "    ")
    src = seq2seq(
        evaluate
        + "model = Seq2Seq(Encoder(1000, 64), Decoder(1200, 64))\n"
        + "optimizer = torch.optim.Adam(model.parameters())\n"
        + "criterion = nn.CrossEntropyLoss()\n"
        + "train_loader, val_loader = [], []\n"
        + "for epoch in range(10):\n"
        + "    model.train()\n"
        + "    train_epoch(model, train_loader, optimizer, criterion)\n"
        + loop
        + "    val_loss = evaluate(model, val_loader, criterion)\n"
        + "    print(greedy_translate(model, torch.zeros(1, 5, dtype=torch.long)))\n",
        p=p,
    )
    assert lines(src, "RNN403") == []


def test_rnn403_silent_when_the_wrapper_does_not_keep_the_submodule():
    # Seq2Seq here builds its own dropout-free parts and only reads a size from its argument
    src = seq2seq(
        EVALUATE_NO_EVAL,
        """\
        class Tagger(nn.Module):
            def __init__(self, encoder):
                super().__init__()
                self.size = encoder.embed.embedding_dim
                self.rnn = nn.GRU(self.size, self.size, batch_first=True)

            def forward(self, src, trg):
                return self.rnn(src)[0]


        model = Tagger(Encoder(1000, 64))
        optimizer = torch.optim.Adam(model.parameters())
        criterion = nn.CrossEntropyLoss()
        train_loader, val_loader = [], []
        for epoch in range(10):
            model.train()
            train_epoch(model, train_loader, optimizer, criterion)
            val_loss = evaluate(model, val_loader, criterion)
        """
    )
    assert lines(src, "RNN403") == []


# ---------------------------------------------------------------- RNN404 dropout-on-logits

HEAD = textwrap.dedent(
    """\
    import torch
    import torch.nn as nn
    import torch.nn.functional as F


    class {name}(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(10, 32, batch_first=True)
            self.dropout = nn.Dropout(0.5)
            self.fc = nn.Linear(32, 3)

        def forward(self, x):
            out, _ = self.lstm(x)
            h = out[:, -1]
    {body}
    """
)


def head(body: str, name: str = "Model") -> str:
    return HEAD.format(name=name, body=textwrap.indent(textwrap.dedent(body), "        "))


@pytest.mark.parametrize(
    "body,line",
    [
        ("return self.dropout(self.fc(h))\n", 16),
        ("logits = self.fc(h)\nlogits = self.dropout(logits)\nreturn logits\n", 17),
        ("return torch.sigmoid(F.dropout(self.fc(h), 0.2, training=self.training)).squeeze(-1)\n", 16),
    ],
)
def test_rnn404_dropout_on_the_output_layer(body, line):
    assert lines(head(body), "RNN404") == [line]


@pytest.mark.parametrize(
    "body,name",
    [
        ("return self.fc(self.dropout(h))\n", "Model"),
        ("h = self.dropout(h)\nreturn self.fc(h)\n", "Model"),
        ("return self.dropout(self.fc(h))\n", "SequenceEncoder"),
    ],
)
def test_rnn404_silent_for_dropout_on_features(body, name):
    assert lines(head(body, name), "RNN404") == []


KERAS_HEAD = textwrap.dedent(
    """\
    import numpy as np
    from keras.layers import LSTM, Activation, Dense, Dropout, Input
    from keras.models import Sequential

    x = np.random.rand(500, 20, 3)
    y = np.random.rand(500, 1)
    model = Sequential()
    model.add(Input(shape=(20, 3)))
    model.add(LSTM(32))
    {layers}
    model.compile(optimizer="adam", loss="mse")
    """
)


def test_rnn404_keras_dropout_after_last_dense():
    src = KERAS_HEAD.format(layers="model.add(Dense(1))\nmodel.add(Dropout(0.25))")
    assert lines(src, "RNN404") == [11]
    src = KERAS_HEAD.format(layers="model.add(Dense(4))\nmodel.add(Dropout(0.25))\nmodel.add(Activation('softmax'))")
    assert lines(src, "RNN404") == [11]


def test_rnn404_keras_silent_for_dropout_before_dense_or_an_uncompiled_block():
    src = KERAS_HEAD.format(layers="model.add(Dropout(0.25))\nmodel.add(Dense(1))")
    assert lines(src, "RNN404") == []
    block = textwrap.dedent(
        """\
        from keras.layers import LSTM, Dropout
        from keras.models import Sequential

        encoder = Sequential([LSTM(32, return_sequences=True), Dropout(0.2)])
        """
    )
    assert lines(block, "RNN404") == []


KERAS_FUNCTIONAL = textwrap.dedent(
    """\
    import numpy as np
    from tensorflow import keras
    from tensorflow.keras import layers
    from tensorflow.keras.layers import LSTM, Activation, Dense, Dropout, Input
    from tensorflow.keras.models import Model

    WINDOW, N_FEATURES, n_classes = 30, 6, 4
    x_train, y_train = np.random.rand(500, WINDOW, N_FEATURES), np.random.rand(500, 1)
    {graph}
    model.compile(optimizer="adam", loss="mse")
    model.fit(x_train, y_train, epochs=5)
    """
)


def keras_functional(graph: str) -> str:
    return KERAS_FUNCTIONAL.format(graph=graph)


@pytest.mark.parametrize(
    "graph,line",
    [
        (
            "inputs = keras.Input(shape=(WINDOW, N_FEATURES))\n"
            "x = layers.LSTM(64)(inputs)\n"
            "x = layers.Dense(1)(x)\n"
            "outputs = layers.Dropout(0.2)(x)\n"
            "model = keras.Model(inputs, outputs)",
            12,
        ),
        (
            "inputs = Input(shape=(WINDOW, N_FEATURES))\n"
            "x = LSTM(64)(inputs)\n"
            "outputs = Dropout(0.3)(Dense(n_classes)(x))\n"
            "model = Model(inputs=inputs, outputs=outputs)",
            11,
        ),
        # a trailing activation layer, and the model built by a function
        (
            "def build():\n"
            "    inputs = Input(shape=(WINDOW, N_FEATURES))\n"
            "    logits = Dense(n_classes)(LSTM(64)(inputs))\n"
            "    return Model(inputs, Activation('softmax')(Dropout(0.3)(logits)))\n"
            "model = build()",
            12,
        ),
        # the layer bound to a name first
        (
            "inputs = Input(shape=(WINDOW, N_FEATURES))\n"
            "head_dropout = Dropout(0.5)\n"
            "out = head_dropout(Dense(1)(LSTM(64)(inputs)))\n"
            "model = keras.Model(inputs=inputs, outputs=[out])",
            11,
        ),
    ],
)
def test_rnn404_keras_functional_dropout_on_the_output(graph, line):
    src = keras_functional(graph)
    assert lines(src, "RNN404") == [line]
    assert "Dropout is the output layer of model" in messages(src, "RNN404")[0]


@pytest.mark.parametrize(
    "graph",
    [
        # dropout before the last Dense: the usual pattern
        "inputs = keras.Input(shape=(WINDOW, N_FEATURES))\n"
        "x = layers.LSTM(64)(inputs)\n"
        "x = layers.Dropout(0.2)(x)\n"
        "outputs = layers.Dense(1)(x)\n"
        "model = keras.Model(inputs, outputs)",
        # reassigned afterwards: the Dropout output is not what the model returns
        "inputs = Input(shape=(WINDOW, N_FEATURES))\n"
        "x = Dropout(0.3)(Dense(16)(LSTM(64)(inputs)))\n"
        "outputs = Dense(1)(x)\n"
        "model = Model(inputs, outputs)",
        # a feature extractor that is never compiled; the compiled model puts Dense last
        "inputs = Input(shape=(WINDOW, N_FEATURES))\n"
        "encoder = Model(inputs, Dropout(0.3)(Dense(32)(LSTM(64)(inputs))))\n"
        "model = Model(inputs, Dense(1)(encoder(inputs)))",
    ],
)
def test_rnn404_keras_functional_silent_when_dropout_feeds_the_output_layer(graph):
    assert lines(keras_functional(graph), "RNN404") == []
