# Peer: Twisted 20.3.0 on CPython 2.7.18 (the last Twisted that runs on Python 2;
# buildbot-slave 0.8.x uses it).
# Sourced by scripts/install-peers.sh with $dest set and pyenv_python defined.
py=$(pyenv_python 2.7.18)
# Python 2 has no venv module. Bootstrap virtualenv 20.15.1 (still runs on and creates
# Python 2 environments) into a scratch folder with py2's own pip, so nothing outside
# $dest is changed.
boot="$dest.boot"
rm -rf "$boot"
"$py" -m pip install --quiet --disable-pip-version-check --target "$boot" virtualenv==20.15.1
PYTHONPATH="$boot" "$py" -m virtualenv --quiet --no-download -p "$py" "$dest"
rm -rf "$boot"
# Automat >= 22 dropped Python 2; pin it and the rest of Twisted 20.3.0's dependency set
# (the newest releases that still install on Python 2).
"$dest/bin/pip" install --quiet --disable-pip-version-check --no-python-version-warning \
  twisted==20.3.0 Automat==20.2.0 \
  attrs==21.4.0 constantly==15.1.0 hyperlink==21.0.0 idna==2.10 incremental==22.10.0 \
  PyHamcrest==1.10.1 six==1.17.0 typing==3.10.0.0 zope.interface==5.5.2
