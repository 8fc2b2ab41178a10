"""Preparing hosts with Ansible: the inventory export, running ``ansible-playbook`` and reading
its recap. The playbooks themselves are package data in ``playbooks/`` (shipped in the wheel);
the repository's top-level ``ansible/`` is a symlink to that directory."""
