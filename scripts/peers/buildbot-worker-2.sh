# buildbot-worker 2.10.5 on CPython 3.8 with Twisted 25.5.0 (the newest Twisted for 3.8,
# which is what pip resolves for this worker there); every package pinned.
# 2.10.5 reports its version as the install date: its wheel has no VERSION file.
"$(pyenv_python 3.8)" -m venv "$dest"
"$dest/bin/pip" install -q --no-deps --disable-pip-version-check \
  buildbot-worker==2.10.5 Twisted==25.5.0 future==1.0.0 \
  attrs==25.3.0 Automat==24.8.1 constantly==23.10.4 hyperlink==21.0.0 idna==3.15 \
  Incremental==24.11.0 packaging==26.2 tomli==2.5.0 typing_extensions==4.13.2 \
  zope.interface==7.2
"$dest/bin/pip" check --disable-pip-version-check
