import Yams

extension JSONValue {
    /// Parses one YAML document (the first) into JSON. Scalars keep their YAML type: `"1"` stays a string,
    /// `1` is an integer, `true` a boolean.
    public init(yaml text: String) throws {
        do {
            guard let node = try Yams.compose(yaml: text) else {
                self = .null
                return
            }
            self = try JSONValue(node: node)
        } catch let error as KubeError {
            throw error
        } catch {
            throw KubeError.decoding(error, "YAML")
        }
    }

    /// Parses a multi-document YAML stream (`---` separated), skipping empty documents.
    public static func documents(yaml text: String) throws -> [JSONValue] {
        do {
            var documents: [JSONValue] = []
            var nodes = try Yams.compose_all(yaml: text)
            while let node = nodes.next() {
                let value = try JSONValue(node: node)
                if value != .null { documents.append(value) }
            }
            if let error = nodes.error { throw error }
            return documents
        } catch let error as KubeError {
            throw error
        } catch {
            throw KubeError.decoding(error, "YAML")
        }
    }

    init(node: Node) throws {
        switch node {
        case .scalar(let scalar):
            switch Tag.Name(rawValue: node.tag.rawValue) {
            case .null:
                self = .null
            case .bool:
                self = node.bool.map(JSONValue.bool) ?? .string(scalar.string)
            case .int:
                self = node.int.map { .int(Int64($0)) } ?? .string(scalar.string)
            case .float:
                self = node.float.map(JSONValue.double) ?? .string(scalar.string)
            default:
                self = .string(scalar.string)
            }
        case .mapping(let mapping):
            var members = JSONObject()
            for (key, value) in mapping {
                guard let name = key.string else {
                    throw KubeError(code: .decoding, message: "YAML mapping key is not a string: \(key)")
                }
                members[name] = try JSONValue(node: value)
            }
            self = .object(members)
        case .sequence(let sequence):
            self = .array(try sequence.map(JSONValue.init(node:)))
        case .alias:
            throw KubeError(code: .decoding, message: "YAML aliases are not supported in Kubernetes manifests")
        }
    }
}

extension KubeObject {
    /// The objects of a YAML manifest stream (`---` separated).
    public static func objects(yaml text: String) throws -> [KubeObject] {
        try JSONValue.documents(yaml: text).map(KubeObject.init)
    }
}
