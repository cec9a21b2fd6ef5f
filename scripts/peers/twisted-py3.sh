# Peer: Twisted 26.10.0 on CPython 3.11 (the modern side of the protocol).
# Sourced by scripts/install-peers.sh with $dest set and pyenv_python defined.
py=$(pyenv_python 3.11)
"$py" -m venv "$dest"
# Every dependency pinned so that a fresh machine gets the same set.
"$dest/bin/pip" install --quiet \
  twisted==26.10.0 \
  attrs==26.1.0 Automat==25.4.16 constantly==23.10.4 hyperlink==21.0.0 idna==3.20 \
  incremental==24.11.0 packaging==26.4 typing_extensions==4.16.0 zope.interface==8.7
