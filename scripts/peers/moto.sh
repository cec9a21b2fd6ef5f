# moto 5.2.5 in server mode: an EC2-compatible API on loopback for the ec2 driver's
# tests (CPython 3.11); every package pinned.
"$(pyenv_python 3.11)" -m venv "$dest"
"$dest/bin/pip" install -q --no-deps \
  moto==5.2.5 flask==3.1.3 flask-cors==6.0.5 Werkzeug==3.1.9 blinker==1.9.0 \
  boto3==1.44.8 botocore==1.44.8 s3transfer==0.19.3 jmespath==1.1.0 \
  certifi==2026.10.19.post1 cffi==2.1.1 charset-normalizer==3.5.3 click==8.5.1 \
  cryptography==50.0.2 idna==3.20 itsdangerous==2.2.0 Jinja2==3.1.6 MarkupSafe==3.0.4 \
  pycparser==3.12 python-dateutil==2.9.0.post0 PyYAML==6.0.4 requests==2.34.2 \
  responses==0.26.3 six==1.17.0 urllib3==2.8.0 xmltodict==1.0.4
"$dest/bin/pip" check
