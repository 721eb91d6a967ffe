/// Corefiles copied from `Tests/ManifestsTests/Golden/corefile/*.input.txt`: what clusters really hold.
enum CorefileFixtures {
    /// `kubeadm.input.txt`.
    static let kubeadm = #"""
        .:53 {
            errors
            health {
               lameduck 5s
            }
            ready
            kubernetes cluster.local in-addr.arpa ip6.arpa {
               pods insecure
               fallthrough in-addr.arpa ip6.arpa
               ttl 30
            }
            prometheus :9153
            forward . /etc/resolv.conf {
               max_concurrent 1000
            }
            cache 30
            loop
            reload
            loadbalance
        }
        """# + "\n"

    /// `k3s.input.txt`: imports `*.override` files from `coredns-custom`.
    static let k3s = #"""
        .:53 {
            errors
            health
            ready
            kubernetes cluster.local in-addr.arpa ip6.arpa {
              pods insecure
              fallthrough in-addr.arpa ip6.arpa
            }
            hosts /etc/coredns/NodeHosts {
              ttl 60
              reload 15s
              fallthrough
            }
            prometheus :9153
            forward . /etc/resolv.conf
            cache 30
            loop
            reload
            loadbalance
            import /etc/coredns/custom/*.override
        }
        import /etc/coredns/custom/*.server
        """# + "\n"

    /// `comments-quotes.input.txt`.
    static let commentsAndQuotes = #"""
        # A Corefile with { braces } in comments and "quoted { strings }".
        example.org {   # not the root block {
            template IN A example.org {
                match "^(?P<a>[0-9]+)[.]example[.]org[.]$"
                answer "{{ .Name }} 60 IN A 10.0.0.{{ .Group.a }}"  # a comment with } in it
            }
        }
        .:53 { # root block, opened here
            # }} stray braces in a comment must not close anything {
            errors
            hosts {
                10.0.0.1 "quoted}host.example"
                fallthrough
            }
            forward . 1.1.1.1#not-a-comment-in-caddy-but-is
        }
        """# + "\n"
}
