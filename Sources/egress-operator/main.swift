print("egress-operator")
