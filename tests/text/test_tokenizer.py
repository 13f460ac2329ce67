"""CLIP BPE tokenizer vs transformers' CLIPTokenizer on a vocabulary generated here."""

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest

from prompt_jax.text import tokenizer as tok_lib

pytest.importorskip('transformers')

MERGES = [('t', 'h'), ('th', 'e</w>'), ('a', 'n'), ('i', 'n'), ('o', 'n</w>'), ('e', 'r'),
          ('h', 'a'), ('p', 'h'), ('ph', 'o'), ('t', 'o</w>'), ('o', 'f</w>'),
          ('in', 'g</w>'), ('ha', 's</w>'), ('Ã', '©'), ('w', 'h'), ('wh', 'i'),
          ('c', 'h</w>'), ('an', 'd</w>'), ("'", 's</w>')]

TRICKY = [
    'a photo of a dog.',
    '  Hello,\tWORLD!!\n\n  multiple   spaces  ',
    "It's the dog's toy; they're sure we'll've ... I'M HERE'd",
    'Café crème brûlée — naïve façade, 東京 and Ελληνικά',
    'numbers 12345 and 3.14159, x=y+z; <tag> & {braces} [brackets]',
    'emoji 🐶🐱 and ZWJ 👩‍👩‍👧 and tabs\tand\r\nnewlines',
    'a photo of a cat, which has pointy ears and whiskers.',
    "don't won't can't   'quoted'  \"double\"",
    'MiXeD CaSe WiTh UPPER and lower-case-hyphens_and_underscores',
    '',
]


def reference_vocab():
  """The HF vocab.json of these merges, built here from the format's description (independent of
  prompt_jax.text): printable Latin-1 bytes first, the 68 others -> chr(256+k); then '</w>' forms,
  merges, SOT, EOT."""
  printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
  others = [b for b in range(256) if b not in printable]
  symbols = [chr(b) for b in printable] + [chr(256 + k) for k in range(len(others))]
  tokens = symbols + [t + '</w>' for t in symbols] + [a + b for a, b in MERGES]
  tokens += ['<|startoftext|>', '<|endoftext|>']
  return {t: i for i, t in enumerate(tokens)}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
  d = tmp_path_factory.mktemp('bpe')
  with gzip.open(d / tok_lib.VOCAB_FILE, 'wt', encoding='utf-8') as f:
    f.write('"bpe_simple_vocab_16e6.txt#version: 0.2\n')
    f.write('\n'.join(f'{a} {b}' for a, b in MERGES) + '\n')
  with open(d / 'vocab.json', 'w', encoding='utf-8') as f:
    json.dump(reference_vocab(), f, ensure_ascii=False)
  with open(d / 'merges.txt', 'w', encoding='utf-8') as f:
    f.write('#version: 0.2\n' + '\n'.join(f'{a} {b}' for a, b in MERGES) + '\n')
  return d


def _hf(d):
  from transformers import CLIPTokenizer
  return CLIPTokenizer(vocab=str(d / 'vocab.json'), merges=str(d / 'merges.txt'))


def test_ids_equal_reference(files):
  ours = tok_lib.Tokenizer.from_file(str(files / tok_lib.VOCAB_FILE))
  assert ours.vocab_size == 512 + len(MERGES) + 2 and ours.eot == ours.vocab_size - 1
  assert ours.encoder == reference_vocab()
  assert ours.encoder['a</w>'] == 320 and ours.encoder['!'] == 0  # as in the real vocabulary
  hf = _hf(files)
  for text in TRICKY:
    ref = hf(text)['input_ids']
    got = [ours.sot] + ours.encode(text) + [ours.eot]
    assert got == ref, text


def test_merges_are_used_and_decode(files):
  ours = tok_lib.Tokenizer.from_file(str(files / tok_lib.VOCAB_FILE))
  ids = ours.encode('The photo')
  assert ids == [ours.encoder['the</w>'], ours.encoder['pho'], ours.encoder['to</w>']]
  assert ours.decode(ours.tokenize('Hello,  Wörld!')[0]) == 'hello , wörld !'


def test_context_and_truncation(files):
  ours = tok_lib.Tokenizer.from_file(str(files / tok_lib.VOCAB_FILE), context_length=8)
  out = ours.tokenize(['a photo of a dog', 'x ' * 20], truncate=True)
  assert out.shape == (2, 8) and out.dtype == np.int32
  assert out[0, 0] == ours.sot and out[0].argmax() == list(out[0]).index(ours.eot)
  assert out[1, -1] == ours.eot and (out[1] != 0).all()
  # The default raises as the release's clip.tokenize, naming the text and its length.
  with pytest.raises(ValueError, match=r"'x x x .* is 22 tokens long .* context length 8"):
    ours.tokenize(['a dog', 'x ' * 20])


def test_ftfy_is_required_not_optional():
  # Without ftfy, 8 of 50 varied strings tokenized differently from the release: no silent
  # fallback, the module needs it.
  code = ("import sys; sys.modules['ftfy'] = None\n"
          'try:\n  import prompt_jax.text.tokenizer\nexcept ImportError:\n  sys.exit(3)\n')
  assert subprocess.run([sys.executable, '-c', code]).returncode == 3
  assert tok_lib.clean('â€œquotedâ€\x9d ﬁne Ｆｕｌｌ') == '"quoted" fine full'


def test_html_and_whitespace_cleaning():
  assert tok_lib.clean('  A&amp;amp;B \t\n C ') == 'a&b c'


def test_find_vocab(files, tmp_path):
  assert tok_lib.find_vocab(str(files)).endswith(tok_lib.VOCAB_FILE)
  assert tok_lib.find_vocab('', str(files / 'ViT-B-16.pt')).endswith(tok_lib.VOCAB_FILE)
  with pytest.raises(FileNotFoundError):
    tok_lib.find_vocab(str(tmp_path))


def test_stdlib_fallback_pattern_agrees(monkeypatch, files):
  ours = tok_lib.Tokenizer.from_file(str(files / tok_lib.VOCAB_FILE))
  expected = [ours.encode(t) for t in TRICKY + ['a-_-b __init__ x_y']]
  monkeypatch.setattr(tok_lib, '_PATTERN', tok_lib.FALLBACK_PATTERN)
  fresh = tok_lib.Tokenizer.from_file(str(files / tok_lib.VOCAB_FILE))
  assert [fresh.encode(t) for t in TRICKY + ['a-_-b __init__ x_y']] == expected
