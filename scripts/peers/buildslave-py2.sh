# buildbot-slave 0.8.14.post1 on pyenv CPython 2.7.18 with Twisted 20.3.0 (the last
# release for Python 2) and Automat 20.2.0 (later ones do not import on Python 2).
# The venv is made by virtualenv 20.21.1, the last release that can still create a
# Python 2 environment; it runs from a throwaway Python 3 venv and brings its own
# bundled pip/setuptools for 2.7, so only PyPI is needed.
tool=$(mktemp -d)
"$(pyenv_python 3.11)" -m venv "$tool/venv"
"$tool/venv/bin/pip" install -q --no-deps \
  virtualenv==20.21.1 distlib==0.4.4 filelock==3.32.7 platformdirs==3.11.0
"$tool/venv/bin/virtualenv" -q --app-data "$tool/app-data" --no-periodic-update \
  -p "$(pyenv_python 2.7)" "$dest"
rm -rf "$tool"
"$dest/bin/pip" install -q --no-deps --no-python-version-warning \
  buildbot-slave==0.8.14.post1 Twisted==20.3.0 Automat==20.2.0 \
  attrs==21.4.0 constantly==15.1.0 hyperlink==21.0.0 idna==2.10 incremental==22.10.0 \
  PyHamcrest==1.10.1 six==1.17.0 typing==3.10.0.0 zope.interface==5.5.2
"$dest/bin/pip" check
