import AsyncHTTPClient
import Foundation
import NIOCore
import NIOFoundationCompat

/// One change seen by a watch.
public struct WatchEvent: Sendable, Hashable {
    public enum EventType: String, Sendable, Hashable {
        case added = "ADDED"
        case modified = "MODIFIED"
        case deleted = "DELETED"
        /// Carries only a newer `metadata.resourceVersion` to resume from; no object changed.
        case bookmark = "BOOKMARK"
    }

    public var type: EventType
    /// The object after the change (for `deleted`, its last state).
    public var object: KubeObject

    public init(type: EventType, object: KubeObject) {
        self.type = type
        self.object = object
    }
}

public struct WatchOptions: Sendable {
    /// Resume after this resourceVersion (the list's, or the last event's). `nil` starts with synthetic `ADDED`
    /// events for every existing object.
    public var resourceVersion: String?
    public var labelSelector: String?
    public var fieldSelector: String?
    /// Ask for `BOOKMARK` events, which keep the resume point fresh and make 410s after a reconnect rarer.
    public var allowBookmarks: Bool
    /// The server ends the watch after this long; the caller reconnects from the last resourceVersion.
    public var timeoutSeconds: Int?
    /// Leave each object's `metadata.managedFields` out while parsing (for caches, which never read them).
    public var omittingManagedFields: Bool

    public init(
        resourceVersion: String? = nil,
        labelSelector: String? = nil,
        fieldSelector: String? = nil,
        allowBookmarks: Bool = true,
        timeoutSeconds: Int? = 300,
        omittingManagedFields: Bool = false
    ) {
        self.resourceVersion = resourceVersion
        self.labelSelector = labelSelector
        self.fieldSelector = fieldSelector
        self.allowBookmarks = allowBookmarks
        self.timeoutSeconds = timeoutSeconds
        self.omittingManagedFields = omittingManagedFields
    }
}

extension KubeClient {
    /// Opens a watch. The stream ends (returns `nil`) when the server closes it, e.g. after
    /// ``WatchOptions/timeoutSeconds``; reconnect from the last seen resourceVersion then. An expired
    /// resourceVersion throws ``KubeError/Code/gone`` (HTTP 410 or an `ERROR` event with code 410): list again.
    /// Cancelling the consuming task closes the connection.
    public func watch(
        _ resource: Resource,
        namespace: String? = nil,
        options: WatchOptions = WatchOptions()
    )
        async throws -> WatchEventStream
    {
        var query: [(String, String)] = [("watch", "true")]
        if let value = options.resourceVersion { query.append(("resourceVersion", value)) }
        if let value = options.labelSelector { query.append(("labelSelector", value)) }
        if let value = options.fieldSelector { query.append(("fieldSelector", value)) }
        if options.allowBookmarks { query.append(("allowWatchBookmarks", "true")) }
        if let value = options.timeoutSeconds { query.append(("timeoutSeconds", String(value))) }
        let path = resource.path(namespace: namespace)
        let response = try await self.execute(.GET, path, query: query)
        guard response.status.code == 200 else {
            let body: ByteBuffer
            do {
                body = try await response.body.collect(upTo: 1024 * 1024)
            } catch {
                throw self.mapTransportError(error, "watch \(path)")
            }
            throw Self.error(for: response, body: body)
        }
        return WatchEventStream(
            body: response.body,
            context: "watch \(resource)",
            client: self,
            omission: options.omittingManagedFields ? .managedFieldsOfWatchedObject : nil
        )
    }
}

/// The events of one watch request, parsed from the line-delimited JSON stream as they arrive.
public struct WatchEventStream: AsyncSequence, Sendable {
    public typealias Element = WatchEvent

    let body: HTTPClientResponse.Body
    let context: String
    let client: KubeClient
    let omission: JSONValue.Omission?

    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(
            body: self.body.makeAsyncIterator(),
            context: self.context,
            client: self.client,
            omission: self.omission
        )
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        var body: HTTPClientResponse.Body.AsyncIterator
        let context: String
        let client: KubeClient
        var buffer = ByteBuffer()
        /// Readable bytes already searched for a newline: an event of a large object (a ConfigMap of hundreds of KB)
        /// arrives in many chunks, and searching from its start after each one was quadratic.
        var searched = 0
        var finished = false
        let omission: JSONValue.Omission?

        init(
            body: HTTPClientResponse.Body.AsyncIterator,
            context: String,
            client: KubeClient,
            omission: JSONValue.Omission?
        ) {
            self.body = body
            self.context = context
            self.client = client
            self.omission = omission
        }

        public mutating func next() async throws -> WatchEvent? {
            while true {
                if let line = self.nextLine() {
                    if line.readableBytesView.allSatisfy({ $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\r") }) {
                        continue
                    }
                    return try Self.decode(line, context: self.context, omitting: self.omission)
                }
                if self.finished {
                    guard self.buffer.readableBytes > 0 else { return nil }
                    let rest = self.buffer
                    self.buffer.clear()
                    return try Self.decode(rest, context: self.context, omitting: self.omission)
                }
                do {
                    if var chunk = try await self.body.next() {
                        self.buffer.writeBuffer(&chunk)
                    } else {
                        self.finished = true
                    }
                } catch {
                    throw self.client.mapTransportError(error, self.context)
                }
            }
        }

        private mutating func nextLine() -> ByteBuffer? {
            let searched = self.searched
            let found = self.buffer.withUnsafeReadableBytes { bytes in
                bytes[searched...].firstIndex(of: UInt8(ascii: "\n"))
            }
            guard let length = found else {
                self.searched = self.buffer.readableBytes
                if self.buffer.readerIndex > 64 * 1024 { self.buffer.discardReadBytes() }
                return nil
            }
            self.searched = 0
            let line = self.buffer.readSlice(length: length)
            self.buffer.moveReaderIndex(forwardBy: 1)
            return line
        }

        static func decode(_ line: String, context: String) throws -> WatchEvent {
            try decode(ByteBuffer(string: line), context: context)
        }

        static func decode(
            _ line: ByteBuffer,
            context: String,
            omitting omission: JSONValue.Omission? = nil
        ) throws -> WatchEvent {
            let type: String
            let object: JSONValue
            do {
                let frame = try line.withUnsafeReadableBytes { bytes throws(JSONTextError) in
                    try JSONValue(parsing: bytes, omitting: omission)
                }
                guard let frameType = frame["type"]?.stringValue, let frameObject = frame["object"] else {
                    throw JSONTextError(offset: 0, message: "a watch event needs \"type\" and \"object\"")
                }
                (type, object) = (frameType, frameObject)
            } catch {
                throw KubeError.decoding(error, "an event of \(context)")
            }
            if type == "ERROR" {
                let status = try? object.decode(Status.self)
                throw KubeError.from(
                    httpStatus: status?.code ?? 500,
                    status: status,
                    body: object.jsonString(),
                    retryAfterHeader: nil
                )
            }
            guard let eventType = WatchEvent.EventType(rawValue: type) else {
                throw KubeError(code: .decoding, message: "unknown watch event type \(type) in \(context)")
            }
            return WatchEvent(type: eventType, object: KubeObject(object))
        }
    }
}
