"""CLIP's byte-level BPE tokenizer, reimplemented from its description (no download, ever).

The vocabulary is OpenAI's `bpe_simple_vocab_16e6.txt.gz` (a gzip text file: one header line, then
one merge "a b" per line), given by path or found next to the weights (`find_vocab`). Token ids:
  256 byte symbols (order of `byte_symbols`), the same + '</w>', one id per merge (rank order), then
  <|startoftext|> and <|endoftext|> (49406, 49407 for the real file: EOT is the largest id, so
  CLIP pools the text feature at argmax(ids)).
Only the first 49152 - 256 - 2 merges are used (as the release does).

Cleaning, as the release: `ftfy.fix_text` (a dependency: without it curly quotes, mojibake,
ligatures, fullwidth and control characters tokenize differently), html.unescape twice, whitespace
runs -> one space, strip, lower-case.
A text longer than the context (77 tokens with SOT/EOT) is a ValueError naming it and its length,
as the release's `clip.tokenize` raises (a cut description would silently change its class's
text feature); `tokenize(..., truncate=True)` cuts it instead.
Pre-tokenisation: the release's regex (special tokens, English contractions, letter runs, single
digits, runs of other non-space symbols) with the `regex` package, or a stdlib `re` equivalent
(`FALLBACK_PATTERN`); each piece is byte-encoded, then BPE-merged.
"""

from __future__ import annotations

import functools
import gzip
import html
import os
import re
from collections.abc import Iterable, Sequence

import ftfy
import numpy as np

SOT, EOT = '<|startoftext|>', '<|endoftext|>'
VOCAB_FILE = 'bpe_simple_vocab_16e6.txt.gz'
_MAX_MERGES = 49152 - 256 - 2
# The release's pre-tokeniser: special tokens, contractions, letter runs, single digits, other runs.
FALLBACK_PATTERN = re.compile(
    r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[^\W\d_]+|\d|(?:[^\s\w]|_)+""",
    re.IGNORECASE)
try:  # the `regex` package has Unicode classes (the release's exact pattern)
  import regex
  _PATTERN = regex.compile(
      r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
      regex.IGNORECASE)
except ImportError:  # stdlib: letters = [^\W\d_]; differs only on rare non-decimal numerals (², ½)
  _PATTERN = FALLBACK_PATTERN


@functools.lru_cache
def byte_symbols() -> dict[int, str]:
  """Byte -> printable unicode char, in vocabulary order: first the 188 printable Latin-1 bytes
  ('!'..'~', '¡'..'¬', '®'..'ÿ') mapping to themselves, then the other 68 bytes in byte order
  mapping to chr(256 + k), so BPE never sees whitespace/control characters. Ids 0..255 follow
  this order (so id 0 is '!', and 'a</w>' is 320 as in the real vocabulary)."""
  keep = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1))
          + list(range(ord('®'), ord('ÿ') + 1)))
  table = {b: chr(b) for b in keep}
  extra = 0
  for b in range(256):
    if b not in table:
      table[b] = chr(256 + extra)
      extra += 1
  return table


def clean(text: str) -> str:
  """The release's basic (ftfy + html unescape) and whitespace cleaning, lower-cased."""
  text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
  return re.sub(r'\s+', ' ', text).strip().lower()


def find_vocab(path_or_dir: str = '', weights_path: str = '') -> str:
  """The vocab file: `path_or_dir` (a file, or a directory holding VOCAB_FILE), else VOCAB_FILE
  next to `weights_path`. Raises FileNotFoundError saying where it looked (never downloads)."""
  tried = []
  for cand in (path_or_dir, os.path.dirname(weights_path) if weights_path else ''):
    if not cand:
      continue
    path = os.path.join(cand, VOCAB_FILE) if os.path.isdir(cand) else cand
    tried.append(path)
    if os.path.isfile(path):
      return path
  raise FileNotFoundError(f'CLIP BPE vocabulary {VOCAB_FILE} not found (looked at {tried}); put '
                          'the file from the CLIP release next to the weights or set its path')


def read_merges(path: str) -> list[tuple[str, str]]:
  """Merge pairs of a vocab file (gzip or plain text), header line skipped."""
  opener = gzip.open if path.endswith('.gz') else open
  with opener(path, 'rt', encoding='utf-8') as f:
    lines = f.read().split('\n')
  lines = lines[1:_MAX_MERGES + 1]
  return [tuple(line.split()) for line in lines if line.strip()]


class Tokenizer:
  """encode(text) -> ids without SOT/EOT; tokenize(texts) -> int32 [N, context_length]."""

  def __init__(self, merges: Sequence[tuple[str, str]], context_length: int = 77):
    symbols = list(byte_symbols().values())
    vocab = symbols + [s + '</w>' for s in symbols] + [a + b for a, b in merges] + [SOT, EOT]
    self.encoder = {tok: i for i, tok in enumerate(vocab)}
    self.decoder = {i: tok for tok, i in self.encoder.items()}
    self.ranks = {tuple(m): i for i, m in enumerate(merges)}
    self.sot, self.eot = self.encoder[SOT], self.encoder[EOT]
    self.context_length = context_length
    self.vocab_size = len(vocab)
    self._cache = {SOT: SOT, EOT: EOT}

  @classmethod
  def from_file(cls, path: str, context_length: int = 77) -> Tokenizer:
    return cls(read_merges(path), context_length)

  def bpe(self, word: str) -> str:
    """Space-separated BPE symbols of one pre-token (its last symbol carries '</w>')."""
    if word in self._cache:
      return self._cache[word]
    parts = list(word[:-1]) + [word[-1] + '</w>']
    while len(parts) > 1:
      pairs = {(parts[i], parts[i + 1]) for i in range(len(parts) - 1)}
      best = min(pairs, key=lambda p: self.ranks.get(p, float('inf')))
      if best not in self.ranks:
        break
      merged, i = [], 0
      while i < len(parts):  # merge every occurrence, left to right
        if i < len(parts) - 1 and (parts[i], parts[i + 1]) == best:
          merged.append(parts[i] + parts[i + 1])
          i += 2
        else:
          merged.append(parts[i])
          i += 1
      parts = merged
    out = ' '.join(parts)
    self._cache[word] = out
    return out

  def encode(self, text: str) -> list[int]:
    table = byte_symbols()
    ids = []
    for piece in _PATTERN.findall(clean(text)):
      sym = ''.join(table[b] for b in piece.encode('utf-8'))
      ids.extend(self.encoder[t] for t in self.bpe(sym).split(' '))
    return ids

  def decode(self, ids: Iterable[int]) -> str:
    """Ids -> text ('</w>' becomes a space; SOT dropped; stops at EOT, so padding is ignored)."""
    inv = {v: k for k, v in byte_symbols().items()}
    raw = bytearray()
    for i in ids:
      tok = self.decoder[int(i)]
      if tok == EOT:
        break
      if tok == SOT:
        continue
      end = tok.endswith('</w>')
      raw.extend(inv[c] for c in (tok[:-4] if end else tok))
      if end:
        raw.extend(b' ')
    return raw.decode('utf-8', errors='replace').strip()

  def tokenize(self, texts: str | Sequence[str], truncate: bool = False) -> np.ndarray:
    """int32 [N, context_length]: SOT, tokens, EOT, zero padding. A too long text raises
    ValueError naming it (the release), or with truncate=True is cut to context_length with EOT
    as the last id."""
    if isinstance(texts, str):
      texts = [texts]
    out = np.zeros((len(texts), self.context_length), np.int32)
    for row, text in enumerate(texts):
      ids = [self.sot] + self.encode(text) + [self.eot]
      if len(ids) > self.context_length:
        if not truncate:
          raise ValueError(f'text {text!r} is {len(ids)} tokens long (with SOT/EOT), more than '
                           f'the context length {self.context_length}; shorten it (CLIP cannot '
                           'encode it whole)')
        ids = ids[:self.context_length]
        ids[-1] = self.eot
      out[row, :len(ids)] = ids
    return out
