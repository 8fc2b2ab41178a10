"""Preparing hosts with Ansible: the inventory export, running ``ansible-playbook`` and reading
its recap. The playbooks themselves live in the repository's top-level ``ansible/``."""
