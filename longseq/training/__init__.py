"""Training plumbing shared by the domains' scripts: the config scheme and callbacks.

Needs the ``train`` extra (lightning, pyyaml); ``import longseq`` never imports it.
"""
