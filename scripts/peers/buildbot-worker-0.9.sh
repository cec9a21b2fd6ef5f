# buildbot-worker 0.9.15.post1 on CPython 3.6 with Twisted 18.9.0; every package pinned.
# 0.9.15.post1 rather than 0.9.15: on Python 3, 0.9.15 passes `maxdelay.bit_length`
# (a method) as the reconnect cap, so its first reconnect raises TypeError and it never
# reconnects; .post1 changes only that (and a None check on maxRetries).
"$(pyenv_python 3.6)" -m venv "$dest"
# Twisted 18.9.0 is an sdist with C extensions: build it with the last pip, setuptools
# and wheel for 3.6, and have incremental (its setup_requires) present beforehand so
# setuptools does not fetch an unpinned one. (The venv's first pip, 18.1, crashes on
# PIP_NO_CACHE_DIR=1, hence env -u for that one call.)
env -u PIP_NO_CACHE_DIR "$dest/bin/pip" install -q --disable-pip-version-check \
  pip==21.3.1 setuptools==59.6.0 wheel==0.37.1
"$dest/bin/pip" install -q --no-deps --disable-pip-version-check incremental==22.10.0
"$dest/bin/pip" install -q --no-deps --disable-pip-version-check \
  buildbot-worker==0.9.15.post1 Twisted==18.9.0 future==1.0.0 \
  attrs==22.2.0 Automat==22.10.0 constantly==15.1.0 hyperlink==21.0.0 idna==3.10 \
  PyHamcrest==2.1.0 six==1.17.0 zope.interface==5.5.2
"$dest/bin/pip" check --disable-pip-version-check
