print("egress-proxy")
