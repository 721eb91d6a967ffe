/// Builders for the structural OpenAPI v3 schemas Kubernetes CRDs need: every node typed, descriptions a user
/// reads in `kubectl explain`, validation that runs at admission.
enum OpenAPI {
    static func object(
        _ description: String,
        required: [String] = [],
        defaultValue: JSON = nil,
        _ properties: KeyValuePairs<String, JSON>
    ) -> JSON {
        JSON.object([
            ("type", "object"),
            ("description", .string(description)),
            ("required", required.isEmpty ? .null : JSON(required)),
            ("default", defaultValue),
            ("properties", .object(properties.map { ($0.key, $0.value) })),
        ]).compacted
    }

    static func string(
        _ description: String,
        pattern: String? = nil,
        maxLength: Int? = nil,
        enumValues: [String]? = nil,
        defaultValue: String? = nil,
        format: String? = nil,
        allOf: [JSON]? = nil,
        not: JSON? = nil
    ) -> JSON {
        JSON.object([
            ("type", "string"),
            ("description", .string(description)),
            ("format", JSON(format)),
            ("maxLength", JSON(maxLength)),
            ("pattern", JSON(pattern)),
            ("enum", enumValues.map(JSON.init) ?? .null),
            ("default", JSON(defaultValue)),
            ("allOf", allOf.map(JSON.array) ?? .null),
            ("not", not ?? .null),
        ]).compacted
    }

    static func integer(
        _ description: String,
        minimum: Int? = nil,
        maximum: Int? = nil,
        defaultValue: Int? = nil,
        format: String? = nil
    ) -> JSON {
        JSON.object([
            ("type", "integer"),
            ("description", .string(description)),
            ("format", JSON(format)),
            ("minimum", JSON(minimum)),
            ("maximum", JSON(maximum)),
            ("default", JSON(defaultValue)),
        ]).compacted
    }

    static func boolean(_ description: String, defaultValue: Bool? = nil) -> JSON {
        JSON.object([
            ("type", "boolean"),
            ("description", .string(description)),
            ("default", JSON(defaultValue)),
        ]).compacted
    }

    static func array(
        _ description: String,
        items: JSON,
        maxItems: Int? = nil,
        listType: String? = nil,
        listMapKeys: [String]? = nil
    ) -> JSON {
        JSON.object([
            ("type", "array"),
            ("description", .string(description)),
            ("maxItems", JSON(maxItems)),
            ("x-kubernetes-list-type", JSON(listType)),
            ("x-kubernetes-list-map-keys", listMapKeys.map(JSON.init) ?? .null),
            ("items", items),
        ]).compacted
    }
}
