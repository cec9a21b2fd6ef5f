# buildbot 4.3.0 master on CPython 3.11 with the Twisted it resolves to (26.10.0).
# Every package is pinned so the venv is the same on every machine.
"$(pyenv_python 3.11)" -m venv "$dest"
"$dest/bin/pip" install -q --no-deps \
  buildbot==4.3.0 Twisted==26.10.0 \
  alembic==1.20.1 attrs==26.1.0 autobahn==26.10.2 Automat==25.4.16 cbor2==6.3.0 \
  cffi==2.1.1 constantly==23.10.4 croniter==7.0.0 cryptography==50.0.2 \
  hyperlink==21.0.0 idna==3.20 Incremental==24.11.0 Jinja2==3.1.6 Mako==1.4.3 \
  MarkupSafe==3.0.4 msgpack==1.2.4 multipart==2.0.1 packaging==26.4 pycparser==3.12 \
  PyJWT==2.15.1 pyOpenSSL==26.4.0 python-dateutil==4.0.0 PyYAML==6.0.4 \
  service-identity==26.1.0 SQLAlchemy==2.1.9 treq==26.7.0 txaio==26.6.1 \
  typing_extensions==4.16.0 tzdata==2026.6 ujson==6.1.0 unidiff==1.0.1 \
  zope.interface==8.7
"$dest/bin/pip" check
